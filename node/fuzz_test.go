package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocaine/cocaine/rpc"
)

// The decoders of what users upload: manifests, profiles, archives and the
// request_timeout header. Properties: no panic, and a value that decodes is usable.

func FuzzDecodeManifest(f *testing.F) {
	for _, v := range []any{
		map[string]any{"slave": "bin/echo"},
		map[string]any{"slave": "/usr/bin/python3", "environment": map[string]any{"PYTHONPATH": "/srv"}},
		map[string]any{"environment": map[string]any{"A": uint64(1)}},
		[]any{"slave"},
	} {
		b, _ := rpc.Marshal(v)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeManifest(b)
		if err != nil {
			return
		}
		if m.Slave == "" {
			t.Fatal("a decoded manifest without a slave")
		}
		for k, v := range m.Environment {
			if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(v, "\x00") {
				t.Fatalf("unusable environment %q=%q", k, v)
			}
		}
	})
}

func FuzzDecodeProfile(f *testing.F) {
	for _, v := range []any{
		map[string]any{},
		map[string]any{"concurrency": uint64(3), "pool-limit": uint64(2), "queue-limit": uint64(0), "request-timeout": 0.5},
		map[string]any{"heartbeat-timeout": 0.0},
		map[string]any{"isolate": map[string]any{"type": "process", "args": map[string]any{"class": "idle"}}},
		map[string]any{"publish-on": uint64(3), "unpublish-under": uint64(4), "grow-threshold": 1e300},
	} {
		b, _ := rpc.Marshal(v)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeProfile("fuzz", b)
		if err != nil {
			return
		}
		if p.Concurrency <= 0 || p.PoolLimit <= 0 || p.HeartbeatTimeout <= 0 || p.GrowThreshold <= 0 ||
			p.PublishOn > p.PoolLimit || p.PublishOn < p.UnpublishUnder || p.SpawnTimeout < 0 || p.RequestTimeout < 0 {
			t.Fatalf("an unusable profile decoded: %+v", p)
		}
	})
}

func FuzzUnpack(f *testing.F) {
	f.Add(archive(f, true, entry{name: "bin/run", body: "x", typ: '0'}))
	f.Add(archive(f, false, entry{name: "a/", typ: '5'}, entry{name: "a/l", link: "../b", typ: '2'}))
	f.Add(archive(f, false, entry{name: "../x", body: "x", typ: '0'}))
	wrapped, _ := rpc.Marshal(archive(f, true, entry{name: "f", body: "y", typ: '0'}))
	f.Add(wrapped)
	f.Fuzz(func(t *testing.T, b []byte) {
		root := t.TempDir()
		dir := filepath.Join(root, "app")
		if err := Unpack(UnwrapArchive(b), dir); err != nil {
			return
		}
		filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
			if err == nil && path != root && !within(dir, path) {
				t.Fatalf("%s escaped %s", path, dir)
			}
			if err == nil && info.Mode()&os.ModeSymlink != 0 {
				target, _ := os.Readlink(path)
				if filepath.IsAbs(target) || !within(dir, filepath.Join(filepath.Dir(path), target)) {
					t.Fatalf("symlink %s -> %s leaves the app", path, target)
				}
			}
			return nil
		})
	})
}

func FuzzRequestTimeout(f *testing.F) {
	f.Add([]byte{0xe8, 3, 0, 0, 0, 0, 0, 0})
	f.Add([]byte("1000"))
	f.Add([]byte("-1"))
	f.Fuzz(func(t *testing.T, v []byte) {
		d, ok := requestTimeout([]rpc.Header{{Name: HeaderRequestTimeout, Value: v}})
		if ok && d < 0 {
			t.Fatalf("negative timeout %v from %x", d, v)
		}
	})
}
