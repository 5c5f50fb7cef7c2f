package testcluster

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// buildEcho builds examples/echo and returns its app archive (msgpack-wrapped tar.gz,
// as cocaine-tool uploads it) and manifest.
func buildEcho(t *testing.T) (archive, manifest []byte) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "echo")
	if out, err := exec.Command("go", "build", "-o", bin, "../../examples/echo").CombinedOutput(); err != nil {
		t.Fatalf("go build examples/echo: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "echo", Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg})
	tw.Write(b)
	tw.Close()
	zw.Close()
	if archive, err = rpc.Marshal(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if manifest, err = rpc.Marshal(map[string]any{"slave": "echo"}); err != nil {
		t.Fatal(err)
	}
	return archive, manifest
}

// enqueueEcho sends one request to the echo app through host n's locator.
func enqueueEcho(t *testing.T, n *Node, msg string) error {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := rpc.Service(ctx, n.Locator(), "echo", rpc.DialConfig{})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Call(ctx, "enqueue", "echo")
	if err != nil {
		return err
	}
	if err := ch.Write(msg); err != nil {
		return err
	}
	if err := ch.Close(); err != nil {
		return err
	}
	var got strings.Builder
	for {
		m, err := ch.Recv(ctx)
		if err != nil {
			return err
		}
		if err := m.Err(); err != nil {
			return err
		}
		switch m.Name {
		case "write":
			var s string
			if err := m.Args.Scan(&s); err != nil {
				return err
			}
			got.WriteString(s)
		case "close":
			if got.String() != msg {
				return fmt.Errorf("echo answered %q, want %q", got.String(), msg)
			}
			return nil
		}
	}
}

// TestAppFailoverAcrossHosts: the echo app, uploaded once through host 0, runs on hosts 1
// and 2; host 0 resolves both and calls it; when host 1 dies it leaves host 0's answers
// within its lease TTL and calls go to host 2.
func TestAppFailoverAcrossHosts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs an app")
	}
	archive, manifest := buildEcho(t)
	c := New(t, Options{Nodes: 3}) // the archive (2.5 MB) goes through the blob store
	c.WaitLeader(t)
	h0, h1, h2 := c.Node(0), c.Node(1), c.Node(2)
	st := h0.Dial(t, "storage")
	for _, w := range []struct {
		coll  string
		value []byte
		tag   string
	}{{"apps", archive, "app"}, {"manifests", manifest, "app"}, {"profiles", []byte{0x80}, "profile"}} {
		if _, err := ucall(t.Context(), st, 30*time.Second, "write", w.coll, "echo", w.value, []string{w.tag}); err != nil {
			t.Fatalf("write %s/echo: %v", w.coll, err)
		}
	}
	for _, n := range []*Node{h1, h2} {
		if _, err := ucall(t.Context(), n.Dial(t, "node"), 30*time.Second, "start_app", "echo", "echo"); err != nil {
			t.Fatalf("start_app on %s: %v", n.Name, err)
		}
	}
	var eps1 []rpc.Endpoint
	Eventually(t, 20*time.Second, func() error {
		eps, err := resolveOn(t, h0, "echo")
		if err != nil {
			return err
		}
		if len(eps) != 2 {
			return fmt.Errorf("resolve echo on h0: %v, want the two hosts running it", eps)
		}
		mine, err := resolveOn(t, h1, "echo")
		if err != nil {
			return err
		}
		eps1 = mine[:1] // h1's own endpoint comes first on h1
		return nil
	})
	if err := enqueueEcho(t, h0, "through h0"); err != nil {
		t.Fatal(err)
	}
	h1.Kill()
	Eventually(t, 20*time.Second, func() error {
		eps, err := resolveOn(t, h0, "echo")
		if err != nil {
			return err
		}
		if len(eps) != 1 || slices.Contains(eps, eps1[0]) {
			return fmt.Errorf("resolve echo on h0 after h1 died: %v (h1 had %v)", eps, eps1)
		}
		return nil
	})
	Eventually(t, 10*time.Second, func() error { return enqueueEcho(t, h0, "after the failover") })
}
