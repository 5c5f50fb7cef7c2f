package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// openTest opens a store in a fresh directory and closes it when the test ends.
func openTest(t testing.TB, opts BoltOptions) *Bolt {
	t.Helper()
	b, err := OpenBolt(filepath.Join(t.TempDir(), "storage.db"), opts)
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// indexedTags lists the tag buckets of collection's index, reaching under the API to
// check that emptied tags leave nothing behind.
func indexedTags(t *testing.T, b *Bolt, collection string) []string {
	t.Helper()
	var tags []string
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(collection))
		if c == nil {
			return nil
		}
		return c.Bucket(indexBucket).ForEach(func(k, _ []byte) error {
			tags = append(tags, string(k))
			return nil
		})
	})
	if err != nil {
		t.Fatalf("listing index: %v", err)
	}
	return tags
}

func TestBoltConformance(t *testing.T) {
	runConformance(t, func(t *testing.T, maxValueSize int) backendUnderTest {
		b := openTest(t, BoltOptions{MaxValueSize: maxValueSize})
		return backendUnderTest{
			Backend: b,
			collections: func(t *testing.T) []string {
				cs, err := b.Collections()
				if err != nil {
					t.Fatalf("Collections: %v", err)
				}
				return cs
			},
			indexedTags: func(t *testing.T, collection string) []string { return indexedTags(t, b, collection) },
		}
	})
}

func TestBoltCollectionsAndKeys(t *testing.T) {
	b := openTest(t, BoltOptions{})
	for _, ck := range [][2]string{{"profiles", "b"}, {"apps", "z"}, {"apps", "a"}, {"manifests", "m"}} {
		mustWrite(t, b, ck[0], ck[1], nil)
	}
	cs, err := b.Collections()
	if want := []string{"apps", "manifests", "profiles"}; err != nil || !slices.Equal(cs, want) {
		t.Fatalf("Collections = %q, %v; want %q", cs, err, want)
	}
	keys, err := b.Keys("apps")
	if want := []string{"a", "z"}; err != nil || !slices.Equal(keys, want) {
		t.Fatalf("Keys(apps) = %q, %v; want %q", keys, err, want)
	}
	keys, err = b.Keys("nope")
	if err != nil || keys == nil || len(keys) != 0 {
		t.Fatalf("Keys(nope) = %#v, %v; want empty", keys, err)
	}
	if _, err := b.Keys(""); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("Keys(\"\") = %v, want ErrInvalidName", err)
	}
}

func TestBoltPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "storage.db")
	b, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, b, "manifests", "echo", []byte("manifest"), "app")
	mustWrite(t, b, "groups", "g", []byte("group"), "group", "active")
	mustWrite(t, b, "groups", "gone", []byte("x"), "group")
	if err := b.Remove(context.Background(), "groups", "gone"); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	b, err = OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer b.Close()
	if got := mustRead(t, b, "manifests", "echo"); string(got) != "manifest" {
		t.Fatalf("Read = %q after reopen", got)
	}
	if got := mustFind(t, b, "groups", "group", "active"); !slices.Equal(got, []string{"g"}) {
		t.Fatalf("Find = %q after reopen, want [g]", got)
	}
	if _, err := b.Read(context.Background(), "groups", "gone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed key after reopen: %v, want ErrNotFound", err)
	}
}

func TestBoltLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "storage.db")
	first, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// flock locks are per open file, so a second open in this process conflicts just as
	// a second daemon would.
	second, err := OpenBolt(path, BoltOptions{LockTimeout: 100 * time.Millisecond})
	if err == nil {
		second.Close()
		t.Fatal("second OpenBolt of a held file succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second OpenBolt: %v, want ErrLocked", err)
	}
	if want := "storage: open " + path + ": database is locked by another process"; err.Error() != want {
		t.Fatalf("message %q, want %q", err, want)
	}

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	third, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatalf("OpenBolt after the holder closed: %v", err)
	}
	third.Close()
}

func TestOpenBoltErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no", "such", "dir", "storage.db")
	_, err := OpenBolt(missing, BoltOptions{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("OpenBolt in a missing directory: %v, want fs.ErrNotExist", err)
	}
	if want := "storage: open " + missing + ": no such file or directory"; err.Error() != want {
		t.Fatalf("message %q, want %q", err, want)
	}

	if _, err := OpenBolt(filepath.Join(dir, "x.db"), BoltOptions{MaxValueSize: -1}); err == nil {
		t.Fatal("OpenBolt with invalid options succeeded")
	}
}

func TestBoltOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts BoltOptions
		bad  []string // fields the error must name
	}{
		{"zero", BoltOptions{}, nil},
		{"explicit", BoltOptions{MaxValueSize: 1 << 20, LockTimeout: time.Minute}, nil},
		{"negative size", BoltOptions{MaxValueSize: -1}, []string{"MaxValueSize"}},
		{"size over bbolt's", BoltOptions{MaxValueSize: bolt.MaxValueSize + 1}, []string{"MaxValueSize"}},
		{"all wrong", BoltOptions{MaxValueSize: -1, LockTimeout: -time.Second}, []string{"MaxValueSize", "LockTimeout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if (err != nil) != (len(tc.bad) > 0) {
				t.Fatalf("Validate = %v, want errors about %q", err, tc.bad)
			}
			for _, field := range tc.bad {
				if !strings.Contains(err.Error(), field) {
					t.Errorf("Validate = %v, does not name %s", err, field)
				}
			}
		})
	}
}

func TestBoltVersion(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(tx *bolt.Tx) error
	}{
		{"newer version", func(tx *bolt.Tx) error {
			m, err := tx.CreateBucket(metaBucket)
			if err != nil {
				return err
			}
			return m.Put(versionKey, binary.BigEndian.AppendUint64(nil, storeVersion+1))
		}},
		{"malformed marker", func(tx *bolt.Tx) error {
			m, err := tx.CreateBucket(metaBucket)
			if err != nil {
				return err
			}
			return m.Put(versionKey, []byte("1"))
		}},
		{"foreign bbolt file", func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket([]byte("key"))
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "storage.db")
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(tc.setup); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			b, err := OpenBolt(path, BoltOptions{})
			if err == nil {
				b.Close()
				t.Fatal("OpenBolt succeeded")
			}
			if !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("OpenBolt: %v, want ErrUnsupportedVersion", err)
			}
			if !strings.HasPrefix(err.Error(), "storage: open "+path+": unsupported store version") {
				t.Fatalf("message %q", err)
			}
			// The failed open must release the lock.
			db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 100 * time.Millisecond})
			if err != nil {
				t.Fatalf("file still held after the failed open: %v", err)
			}
			db.Close()
		})
	}
}

// TestBoltTooLarge checks the exact message and the default limit; the suite checks the
// configured limit.
func TestBoltTooLarge(t *testing.T) {
	ctx := context.Background()
	t.Run("message", func(t *testing.T) {
		b := openTest(t, BoltOptions{MaxValueSize: 1024})
		err := b.Write(ctx, "apps", "big", make([]byte, 1025), []string{"app"})
		if want := "storage: write apps/big: value too large: 1025 bytes, the limit is 1024"; err == nil || err.Error() != want {
			t.Fatalf("message %v, want %q", err, want)
		}
	})
	t.Run("default limit", func(t *testing.T) {
		b := openTest(t, BoltOptions{})
		err := b.Write(ctx, "apps", "big", make([]byte, DefaultMaxValueSize+1), nil)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Write: %v, want ErrTooLarge", err)
		}
	})
}

// TestBoltClosed checks the listing methods after Close; the suite checks the Backend
// methods.
func TestBoltClosed(t *testing.T) {
	b, err := OpenBolt(filepath.Join(t.TempDir(), "storage.db"), BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, b, "c", "k", []byte("v"), "t")
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, tc := range []struct {
		name string
		op   func() error
	}{
		{"collections", func() error { _, err := b.Collections(); return err }},
		{"keys", func() error { _, err := b.Keys("c"); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.op(); !errors.Is(err, ErrClosed) {
				t.Fatalf("got %v, want ErrClosed", err)
			}
		})
	}
}

// TestBoltCloseRace covers an operation that passed the closed check just before Close:
// bbolt's own "database not open" must reach the caller as ErrClosed.
func TestBoltCloseRace(t *testing.T) {
	b := openTest(t, BoltOptions{})
	if err := b.db.Close(); err != nil { // closed underneath, flag not yet set
		t.Fatal(err)
	}
	if _, err := b.Read(context.Background(), "c", "k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read = %v, want ErrClosed", err)
	}
	if err := b.Write(context.Background(), "c", "k", nil, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write = %v, want ErrClosed", err)
	}
}

func TestBoltCorrupt(t *testing.T) {
	ctx := context.Background()
	b := openTest(t, BoltOptions{})
	mustWrite(t, b, "c", "k", []byte("v"), "t")
	// Make the key's tag list name a tag the index does not hold.
	err := b.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("c")).Bucket(tagsBucket).Put([]byte("k"), appendTags(nil, []string{"ghost"}))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Write(ctx, "c", "k", []byte("v2"), nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Write = %v, want ErrCorrupt", err)
	}
	if err := b.Remove(ctx, "c", "k"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Remove = %v, want ErrCorrupt", err)
	}
	// A failed transaction leaves the old state.
	if got := mustRead(t, b, "c", "k"); string(got) != "v" {
		t.Fatalf("Read = %q, want v", got)
	}
	if b.Path() == "" {
		t.Fatal("Path is empty")
	}
}

func TestBoltLargeValues(t *testing.T) {
	path := filepath.Join(t.TempDir(), "storage.db")
	b, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	values := map[string][]byte{}
	for _, size := range []int{1 << 20, 20 << 20} {
		v := make([]byte, size)
		for i := range v {
			v[i] = byte(rng.Uint32())
		}
		key := fmt.Sprint(size)
		values[key] = v
		mustWrite(t, b, "apps", key, v, "app")
		if got := mustRead(t, b, "apps", key); !bytes.Equal(got, v) {
			t.Fatalf("Read of %d bytes returned %d different bytes", size, len(got))
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b, err = OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for key, v := range values {
		if got := mustRead(t, b, "apps", key); !bytes.Equal(got, v) {
			t.Fatalf("after reopen, Read(%s) differs", key)
		}
	}
}

func TestTagsEncoding(t *testing.T) {
	for _, tags := range [][]string{nil, {"app"}, {"group", "active"}, {string(allBytesButNUL()), strings.Repeat("t", 300)}} {
		got, err := decodeTags(appendTags(nil, tags))
		if err != nil || !slices.Equal(got, tags) {
			t.Errorf("round trip of %q = %q, %v", tags, got, err)
		}
	}
	for _, bad := range [][]byte{{0x05, 'a'}, {0x80}, {0x01, 'a', 0x02}} {
		if _, err := decodeTags(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decodeTags(%x) = %v, want ErrCorrupt", bad, err)
		}
	}
}

func BenchmarkBoltWrite(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			s := openTest(b, BoltOptions{})
			ctx := context.Background()
			value := make([]byte, size)
			tags := []string{"app"}
			b.ReportAllocs()
			b.SetBytes(int64(size))
			i := 0
			for b.Loop() {
				// A bounded key set, so the benchmark measures overwrites with index
				// updates rather than an ever-growing file.
				if err := s.Write(ctx, "apps", fmt.Sprint("app", i%64), value, tags); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkBoltRead(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			s := openTest(b, BoltOptions{})
			ctx := context.Background()
			keys := make([]string, 64)
			for i := range keys {
				keys[i] = fmt.Sprint("app", i)
				mustWrite(b, s, "apps", keys[i], make([]byte, size), "app")
			}
			b.ReportAllocs()
			b.SetBytes(int64(size))
			i := 0
			for b.Loop() {
				if _, err := s.Read(ctx, "apps", keys[i%len(keys)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
