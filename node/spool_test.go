package node

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cocaine/cocaine/rpc"
)

type entry struct {
	name, body, link string
	typ              byte
}

func archive(t testing.TB, gz bool, entries ...entry) []byte {
	var buf bytes.Buffer
	var w = &buf
	var zw *gzip.Writer
	tw := tar.NewWriter(w)
	if gz {
		zw = gzip.NewWriter(w)
		tw = tar.NewWriter(zw)
	}
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o755, Size: int64(len(e.body)), Linkname: e.link}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	if zw != nil {
		zw.Close()
	}
	return buf.Bytes()
}

func TestUnpack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "app")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "stale"), []byte("old"), 0o644)
	a := archive(t, true,
		entry{name: "bin/", typ: tar.TypeDir},
		entry{name: "bin/run", body: "#!/bin/sh\n", typ: tar.TypeReg},
		entry{name: "lib/data.txt", body: "data", typ: tar.TypeReg},
		entry{name: "bin/link", link: "../lib/data.txt", typ: tar.TypeSymlink},
	)
	// cocaine-tool stores the archive as a msgpack raw.
	wrapped, _ := rpc.Marshal(a)
	if err := Unpack(UnwrapArchive(wrapped), dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "bin", "link")); err != nil || string(b) != "data" {
		t.Fatalf("symlink: %q %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "bin", "run")); err != nil || fi.Mode().Perm()&0o100 == 0 {
		t.Fatalf("executable: %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "stale")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the spool directory was not emptied first")
	}
	// A plain tar is fine too.
	if err := Unpack(archive(t, false, entry{name: "x", body: "1", typ: tar.TypeReg}), dir); err != nil {
		t.Fatal(err)
	}
}

func TestUnpackRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    []byte
	}{
		{"parent", archive(t, true, entry{name: "../evil", body: "x", typ: tar.TypeReg})},
		{"nested parent", archive(t, true, entry{name: "a/../../evil", body: "x", typ: tar.TypeReg})},
		{"absolute", archive(t, true, entry{name: "/etc/evil", body: "x", typ: tar.TypeReg})},
		{"symlink out", archive(t, true, entry{name: "l", link: "../../etc/passwd", typ: tar.TypeSymlink})},
		{"absolute symlink", archive(t, true, entry{name: "l", link: "/etc/passwd", typ: tar.TypeSymlink})},
		{"write through a symlink", archive(t, true, entry{name: "l", link: "x", typ: tar.TypeSymlink}, entry{name: "l", body: "x", typ: tar.TypeReg})},
		{"device", archive(t, true, entry{name: "dev", typ: tar.TypeChar})},
		{"hard link", archive(t, true, entry{name: "h", link: "/etc/passwd", typ: tar.TypeLink})},
		{"empty", archive(t, true)},
		{"garbage", []byte("not an archive at all")},
		{"broken gzip", []byte{0x1f, 0x8b, 0, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "app")
			if err := Unpack(tc.a, dir); !errors.Is(err, ErrSpool) {
				t.Fatalf("want ErrSpool, got %v", err)
			}
			if _, err := os.Stat(filepath.Join(root, "evil")); err == nil {
				t.Fatal("an entry escaped the app directory")
			}
		})
	}
}
