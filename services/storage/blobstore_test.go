package storage

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cocaine/cocaine/rpc"
)

func openTestStore(t testing.TB, maxSize int) *blobStore {
	t.Helper()
	s, err := openBlobStore(filepath.Join(t.TempDir(), "blobs"), maxSize)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dirNames lists the directory of s, sorted.
func dirNames(t testing.TB, s *blobStore) []string {
	t.Helper()
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func mustPut(t testing.TB, s *blobStore, data []byte) Digest {
	t.Helper()
	d, unpin, err := s.put(data)
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	unpin()
	return d
}

func TestDigest(t *testing.T) {
	d := DigestOf([]byte("abc"))
	const hexABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if d.String() != hexABC {
		t.Fatalf("digest of abc = %s", d)
	}
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{hexABC, true},
		{strings.ToUpper(hexABC), true},
		{hexABC[:63], false},
		{hexABC + "0", false},
		{"", false},
		{strings.Repeat("g", 64), false},
	} {
		got, err := ParseDigest(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseDigest(%q) = %v", tc.in, err)
		}
		if err != nil && !errors.Is(err, ErrInvalidName) {
			t.Errorf("ParseDigest(%q) = %v, want ErrInvalidName", tc.in, err)
		}
		if err == nil && got != d {
			t.Errorf("ParseDigest(%q) = %s", tc.in, got)
		}
	}
}

func TestBlobStorePutGet(t *testing.T) {
	s := openTestStore(t, 1<<20)
	data := bytes.Repeat([]byte("archive "), 10000)
	d := mustPut(t, s, data)
	if d != DigestOf(data) {
		t.Fatalf("put returned %s, want the data's digest", d)
	}
	if names := dirNames(t, s); !slices.Equal(names, []string{d.String()}) {
		t.Fatalf("directory holds %q, want only the blob", names)
	}
	got, err := s.get(d)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get = %d bytes, %v", len(got), err)
	}
	// Putting it again keeps the one file.
	mustPut(t, s, data)
	if names := dirNames(t, s); len(names) != 1 {
		t.Fatalf("directory holds %q after a second put", names)
	}
	// The empty blob is a blob like any other.
	empty := mustPut(t, s, nil)
	if got, err := s.get(empty); err != nil || len(got) != 0 {
		t.Fatalf("get(empty) = %q, %v", got, err)
	}
	if _, err := s.get(DigestOf([]byte("never stored"))); !errors.Is(err, errNoBlob) {
		t.Fatalf("get of a missing blob = %v, want errNoBlob", err)
	}
	if !s.has(d) || s.has(DigestOf([]byte("x"))) {
		t.Fatal("has disagrees with the store")
	}
	list, err := s.list()
	if err != nil || len(list) != 2 || !slices.Contains(list, d) || !slices.Contains(list, empty) {
		t.Fatalf("list = %v, %v", list, err)
	}
}

func TestBlobStoreTooLarge(t *testing.T) {
	s := openTestStore(t, 16)
	mustPut(t, s, make([]byte, 16))
	_, _, err := s.put(make([]byte, 17))
	if !errors.Is(err, ErrTooLarge) || err.Error() != "storage: value too large: 17 bytes, the limit is 16" {
		t.Fatalf("put = %v, want ErrTooLarge with both sizes", err)
	}
	if _, err := s.create(DigestOf(nil), 17); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("create = %v, want ErrTooLarge", err)
	}
}

// A file whose bytes do not match its name is detected on read, deleted, and then
// reported missing, so that the blob is fetched again.
func TestBlobStoreCorruptDetected(t *testing.T) {
	data := []byte("the bytes of an app archive")
	for _, tc := range []struct {
		name    string
		corrupt func(path string) error
	}{
		{"flipped byte", func(p string) error {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b[3] ^= 0x40
			return os.WriteFile(p, b, 0o600)
		}},
		{"truncated", func(p string) error { return os.Truncate(p, 5) }},
		{"empty", func(p string) error { return os.Truncate(p, 0) }},
		{"extended", func(p string) error {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte("!"))
			return err
		}},
		{"over the limit", func(p string) error { return os.WriteFile(p, make([]byte, 1<<10+1), 0o600) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStore(t, 1<<10)
			d := mustPut(t, s, data)
			if err := tc.corrupt(s.path(d)); err != nil {
				t.Fatal(err)
			}
			_, err := s.get(d)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), d.String()) {
				t.Fatalf("get = %v, want ErrCorrupt naming the digest", err)
			}
			if s.has(d) {
				t.Fatal("the corrupt file is still there")
			}
			if _, err := s.get(d); !errors.Is(err, errNoBlob) {
				t.Fatalf("get after = %v, want errNoBlob", err)
			}
			// A put replaces a corrupt copy rather than trusting it.
			mustPut(t, s, data)
			if err := tc.corrupt(s.path(d)); err != nil {
				t.Fatal(err)
			}
			mustPut(t, s, data)
			if got, err := s.get(d); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("get after the second put = %q, %v", got, err)
			}
		})
	}
}

// A blob appears whole or not at all: a write that fails or is abandoned leaves neither
// the blob nor its temporary file, and a temporary file left by a crash is removed when
// the store is opened again.
func TestBlobStoreAtomicWrites(t *testing.T) {
	s := openTestStore(t, 1<<10)
	data := []byte("0123456789")
	d := DigestOf(data)

	w, err := s.create(d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[:4]); err != nil {
		t.Fatal(err)
	}
	if s.has(d) {
		t.Fatal("a blob is visible before its write is committed")
	}
	if err := w.commit(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("commit of a short blob = %v, want ErrCorrupt", err)
	}
	w.abort()
	if names := dirNames(t, s); len(names) != 0 {
		t.Fatalf("directory holds %q after a failed write", names)
	}

	w, err = s.create(d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("9876543210")); err != nil {
		t.Fatal(err)
	}
	if err := w.commit(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("commit of other bytes = %v, want ErrCorrupt", err)
	}
	if _, err := w.Write([]byte("more")); err == nil {
		t.Fatal("a write past the blob's size succeeded")
	}
	w.abort()
	if names := dirNames(t, s); len(names) != 0 {
		t.Fatalf("directory holds %q after a mismatched write", names)
	}

	// A crash between the write and the rename leaves a temporary file only.
	w, err = s.create(d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	tmp := w.f.Name()
	w.f.Close()
	w.f = nil // as if the process died here
	if _, err := os.Stat(tmp); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.list(); len(list) != 0 {
		t.Fatalf("list = %v: a temporary file counts as a blob", list)
	}
	again, err := openBlobStore(s.dir, s.maxSize)
	if err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, again); len(names) != 0 {
		t.Fatalf("directory holds %q after reopening", names)
	}

	// The abort after a commit leaves the blob alone.
	w, err = again.create(d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.commit(); err != nil {
		t.Fatal(err)
	}
	w.abort()
	if got, err := again.get(d); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get = %q, %v", got, err)
	}
}

// Files that are not blobs are never listed, so never collected.
func TestBlobStoreListSkipsOthers(t *testing.T) {
	s := openTestStore(t, 1<<10)
	d := mustPut(t, s, []byte("x"))
	for _, name := range []string{"README", strings.ToUpper(d.String()), d.String()[:60]} {
		if err := os.WriteFile(filepath.Join(s.dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(s.dir, DigestOf(nil).String()), 0o755); err != nil {
		t.Fatal(err)
	}
	if list, err := s.list(); err != nil || !slices.Equal(list, []Digest{d}) {
		t.Fatalf("list = %v, %v", list, err)
	}
}

// collect deletes a blob only on the second pass that finds it unreferenced and
// unpinned; a pin, even a short one, starts the grace again.
func TestBlobStoreCollect(t *testing.T) {
	s := openTestStore(t, 1<<10)
	kept := mustPut(t, s, []byte("referenced"))
	gone := mustPut(t, s, []byte("unreferenced"))
	pinned, unpin, err := s.put([]byte("being written"))
	if err != nil {
		t.Fatal(err)
	}
	referenced := func(d Digest) bool { return d == kept }

	if deleted, err := s.collect(referenced); err != nil || len(deleted) != 0 {
		t.Fatalf("first collect deleted %v, %v", deleted, err)
	}
	if deleted, err := s.collect(referenced); err != nil || !slices.Equal(deleted, []Digest{gone}) {
		t.Fatalf("second collect deleted %v, %v; want only the unreferenced blob", deleted, err)
	}
	if !s.has(kept) || !s.has(pinned) || s.has(gone) {
		t.Fatal("the wrong files went")
	}
	unpin()
	unpin() // idempotent
	if deleted, _ := s.collect(referenced); len(deleted) != 0 {
		t.Fatalf("the pass right after the unpin deleted %v", deleted)
	}
	// A pin and unpin between two passes restart the grace.
	s.pin(pinned)()
	if deleted, _ := s.collect(referenced); len(deleted) != 0 {
		t.Fatalf("the pass after a new pin deleted %v", deleted)
	}
	if deleted, _ := s.collect(referenced); !slices.Equal(deleted, []Digest{pinned}) {
		t.Fatalf("collect deleted %v, want the unpinned blob", deleted)
	}
	if names := dirNames(t, s); !slices.Equal(names, []string{kept.String()}) {
		t.Fatalf("directory holds %q", names)
	}
}

// blobStream encodes a blob stream as a sequence of [type, args] arrays, the fuzz input
// of FuzzReceiveBlob.
func blobStream(msgs ...[]any) []byte {
	var b []byte
	for _, m := range msgs {
		b = rpc.AppendArrayHeader(b, 2)
		b = rpc.AppendUint(b, uint64(m[0].(int)))
		args, err := rpc.AppendArgs(nil, m[1:]...)
		if err != nil {
			panic(err)
		}
		b = append(b, args...)
	}
	return b
}

// fuzzBlob is the blob that FuzzReceiveBlob's streams try to deliver.
var fuzzBlob = []byte("a small archive, in three chunks")

func receiveSeeds() [][]byte {
	return [][]byte{
		blobStream([]any{rpc.Write, fuzzBlob[:10]}, []any{rpc.Write, fuzzBlob[10:20]}, []any{rpc.Write, fuzzBlob[20:]}, []any{rpc.Close}),
		blobStream([]any{rpc.Write, fuzzBlob}, []any{rpc.Close}),
		blobStream([]any{rpc.Write, fuzzBlob}, []any{rpc.Write, []byte("!")}, []any{rpc.Close}),
		blobStream([]any{rpc.Write, fuzzBlob[:5]}, []any{rpc.Close}),
		blobStream([]any{rpc.Write, []byte("A small archive, in three chunks")}, []any{rpc.Close}),
		blobStream([]any{rpc.Fail, []any{12, 2}, "blob is not on this host"}),
		blobStream([]any{rpc.Write, 7}, []any{rpc.Close}),
		blobStream([]any{rpc.Write, fuzzBlob}),
	}
}

// FuzzReceiveBlob feeds arbitrary message streams to the fetcher's receiving side.
// Whatever the input: no panic, and the blob is committed exactly when the chunks before
// the close are the blob's bytes; otherwise nothing is left in the store.
func FuzzReceiveBlob(f *testing.F) {
	for _, seed := range receiveSeeds() {
		f.Add(seed)
	}
	names := map[uint64]string{rpc.Write: "write", rpc.Fail: "error", rpc.Close: "close"}
	f.Fuzz(func(t *testing.T, stream []byte) {
		s := openTestStore(t, 1<<10)
		d := DigestOf(fuzzBlob)
		w, err := s.create(d, int64(len(fuzzBlob)))
		if err != nil {
			t.Fatal(err)
		}
		defer w.abort()
		dec := rpc.NewDecoder(stream)
		var sent []byte // the chunks the stream carries, as far as they decode
		closed := false
		next := func() (rpc.Message, error) {
			n, err := dec.ArrayLen()
			if err != nil || n != 2 {
				return rpc.Message{}, errors.New("end of the test stream")
			}
			typ, err := dec.Uint()
			if err != nil {
				return rpc.Message{}, err
			}
			args, err := dec.Raw()
			if err != nil {
				return rpc.Message{}, err
			}
			var chunk []byte
			if typ == rpc.Write && rpc.Args(args).Scan(&chunk) == nil {
				sent = append(sent, chunk...)
			}
			closed = closed || typ == rpc.Close
			return rpc.Message{Type: typ, Name: names[typ], Args: rpc.Args(args)}, nil
		}
		err = receiveBlob(w, next)
		w.abort()
		if (err == nil) != (closed && bytes.Equal(sent, fuzzBlob)) {
			t.Fatalf("receiveBlob = %v for chunks %q, closed %v", err, sent, closed)
		}
		got, gerr := s.get(d)
		if err == nil && (gerr != nil || !bytes.Equal(got, fuzzBlob)) {
			t.Fatalf("committed, then get = %q, %v", got, gerr)
		}
		if err != nil && len(dirNames(t, s)) != 0 {
			t.Fatalf("a failed receive left %q", dirNames(t, s))
		}
	})
}

// FuzzBlobStoreRead puts arbitrary bytes where a blob's file is: get returns them only
// if they are the blob, and otherwise reports corruption and removes the file.
func FuzzBlobStoreRead(f *testing.F) {
	f.Add(fuzzBlob)
	f.Add(fuzzBlob[:10])
	f.Add([]byte{})
	f.Add(append(slices.Clone(fuzzBlob), 0))
	f.Fuzz(func(t *testing.T, content []byte) {
		s := openTestStore(t, 64)
		d := DigestOf(fuzzBlob)
		if err := os.WriteFile(s.path(d), content, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := s.get(d)
		switch {
		case bytes.Equal(content, fuzzBlob):
			if err != nil || !bytes.Equal(got, fuzzBlob) {
				t.Fatalf("get of the blob = %q, %v", got, err)
			}
		case !errors.Is(err, ErrCorrupt):
			t.Fatalf("get of %q = %q, %v; want ErrCorrupt", content, got, err)
		case s.has(d):
			t.Fatal("the corrupt file is still there")
		}
	})
}
