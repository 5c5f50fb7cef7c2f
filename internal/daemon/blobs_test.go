package daemon_test

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
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cocaine/cocaine/internal/daemon"
	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/services/storage"
)

// TestStorageBlobValues writes values over storage.max_value_size through the storage
// service of one node: they land in <data_dir>/blobs, survive a restart, keep their tags,
// and their files go once no key refers to them. A value over storage.max_blob_size is
// refused with EFBIG.
func TestStorageBlobValues(t *testing.T) {
	cfg := testConfig(t)
	cfg.Storage.MaxBlobSize = 6 << 20
	cfg.Storage.BlobGCInterval = daemon.Duration(20 * time.Millisecond)
	first := startNode(t, cfg)
	st := connect(t, first, "storage")
	value := make([]byte, 5<<20)
	rand.Read(value)
	mustCall(t, st, "write", []any{"apps", "echo", value, []string{"app"}})
	var got []byte
	mustCall(t, st, "read", []any{"apps", "echo"}, &got)
	if !bytes.Equal(got, value) {
		t.Fatalf("read %d bytes, not the %d written", len(got), len(value))
	}
	sum := sha256.Sum256(value)
	path := filepath.Join(cfg.DataDir, "blobs", hex.EncodeToString(sum[:]))
	if info, err := os.Stat(path); err != nil || info.Size() != int64(len(value)) {
		t.Fatalf("blob file: %v, %v", info, err)
	}
	_, err := call(t, st, "write", "apps", "huge", make([]byte, 6<<20+1))
	if e := wireError(t, err); e.Category != rpc.CategoryGeneric || e.Code != 27 || !strings.Contains(e.Message, "the limit is 6291456") {
		t.Fatalf("write over max_blob_size: %v", err)
	}
	// The blobs service is this host's own: resolvable here, never announced elsewhere.
	if r := resolve(t, first, storage.BlobsName); len(r.Endpoints) != 1 {
		t.Fatalf("blobs endpoints %v", r.Endpoints)
	}
	st.Close()
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}

	second := startNode(t, cfg)
	st = connect(t, second, "storage")
	got = nil
	mustCall(t, st, "read", []any{"apps", "echo"}, &got)
	if !bytes.Equal(got, value) {
		t.Fatal("read after the restart differs")
	}
	var keys []string
	mustCall(t, st, "find", []any{"apps", []string{"app"}}, &keys)
	if !slices.Equal(keys, []string{"echo"}) {
		t.Fatalf("find after the restart = %q", keys)
	}
	mustCall(t, st, "remove", []any{"apps", "echo"})
	eventually(t, callTimeout, func() error {
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("the removed value's blob is still there: %v", err)
		}
		return nil
	})
}

func TestBlobConfigValidate(t *testing.T) {
	cfg := daemon.DefaultConfig()
	cfg.DataDir = "/nonexistent/cocaine"
	cfg.Storage.MaxBlobSize = -1
	cfg.Storage.BlobGCInterval = daemon.Duration(-time.Second)
	cfg.Storage.BlobFetchTimeout = daemon.Duration(-time.Second)
	err := cfg.Validate()
	for _, want := range []string{"storage.max_blob_size -1", "storage.blob_gc_interval -1s", "storage.blob_fetch_timeout -1s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want it to mention %q", err, want)
		}
	}
	cfg.Storage = daemon.StorageConfig{MaxBlobSize: storage.MaxBlobSizeLimit, BlobGCInterval: daemon.Duration(time.Hour)}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate = %v", err)
	}
}
