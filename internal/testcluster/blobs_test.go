package testcluster

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cocaine/cocaine/internal/daemon"
)

// TestStorageBlobs writes a value over the inline limit through host 0: a reference goes
// through Raft and the bytes through the hosts' blob stores. Host 2 reads it, every host
// fetches it in the background, and it stays readable after host 0 dies, even by a host
// that lost its copy (it fetches it from the other survivor, recorded as a holder through
// Raft). Once the key is removed, every host deletes the blob, host 0 too when it is back.
func TestStorageBlobs(t *testing.T) {
	dirs := make([]string, 3)
	c := New(t, Options{Nodes: 3, Configure: func(i int, cfg *daemon.Config) {
		dirs[i] = filepath.Join(cfg.DataDir, "blobs")
		cfg.Storage.BlobGCInterval = daemon.Duration(100 * time.Millisecond)
	}})
	c.WaitLeader(t)
	value := make([]byte, 5<<20)
	rand.Read(value)
	sum := sha256.Sum256(value)
	file := func(i int) string { return filepath.Join(dirs[i], hex.EncodeToString(sum[:])) }
	has := func(i int) bool {
		_, err := os.Stat(file(i))
		return err == nil
	}
	read := func(n *Node) error {
		a, err := call(t, n.Dial(t, "storage"), "read", "apps", "echo")
		if err != nil {
			return fmt.Errorf("%s: read: %w", n.Name, err)
		}
		var got []byte
		if err := a.Scan(&got); err != nil || !bytes.Equal(got, value) {
			return fmt.Errorf("%s: read %d bytes (%v), not the %d written", n.Name, len(got), err, len(value))
		}
		return nil
	}

	if _, err := call(t, c.Node(0).Dial(t, "storage"), "write", "apps", "echo", value, []string{"app"}); err != nil {
		t.Fatal(err)
	}
	if !has(0) {
		t.Fatal("the writer does not keep the blob")
	}
	Eventually(t, 30*time.Second, func() error { return read(c.Node(2)) })
	if !has(2) {
		t.Fatal("host 2 served the value without keeping it")
	}
	Eventually(t, 30*time.Second, func() error {
		if !has(1) || !has(2) {
			return errors.New("hosts 1 and 2 do not both hold the blob yet")
		}
		return nil
	})

	c.Node(0).Kill()
	Eventually(t, 30*time.Second, func() error { return read(c.Node(1)) })
	// Host 1 loses its copy: the only other holder alive is host 2.
	if err := os.Remove(file(1)); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 30*time.Second, func() error { return read(c.Node(1)) })

	Eventually(t, 30*time.Second, func() error {
		_, err := call(t, c.Node(1).Dial(t, "storage"), "remove", "apps", "echo")
		return err
	})
	gone := func(hosts ...int) func() error {
		return func() error {
			for _, i := range hosts {
				if _, err := os.Stat(file(i)); !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("host %d still has the removed key's blob (%v)", i, err)
				}
			}
			return nil
		}
	}
	Eventually(t, 30*time.Second, gone(1, 2))
	if !has(0) {
		t.Fatal("the dead host's copy went")
	}
	c.Node(0).Restart()
	Eventually(t, 30*time.Second, gone(0))
}
