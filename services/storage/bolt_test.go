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
	"sync"
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

func mustWrite(t testing.TB, b *Bolt, collection, key string, value []byte, tags ...string) {
	t.Helper()
	if err := b.Write(context.Background(), collection, key, value, tags); err != nil {
		t.Fatalf("Write(%q, %q): %v", collection, key, err)
	}
}

func mustRead(t testing.TB, b *Bolt, collection, key string) []byte {
	t.Helper()
	v, err := b.Read(context.Background(), collection, key)
	if err != nil {
		t.Fatalf("Read(%q, %q): %v", collection, key, err)
	}
	return v
}

func mustFind(t testing.TB, b *Bolt, collection string, tags ...string) []string {
	t.Helper()
	keys, err := b.Find(context.Background(), collection, tags)
	if err != nil {
		t.Fatalf("Find(%q, %q): %v", collection, tags, err)
	}
	if keys == nil {
		t.Fatalf("Find(%q, %q) = nil, want a non-nil slice", collection, tags)
	}
	return keys
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

func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func TestBoltRoundTrip(t *testing.T) {
	b := openTest(t, BoltOptions{})
	for _, tc := range []struct {
		name            string
		collection, key string
		value           []byte
		tags            []string
	}{
		{"manifest", "manifests", "echo", []byte("\x81\xa4slave\xa4echo"), []string{"app"}},
		{"group", "groups", "g1", []byte{0x81, 0xa4, 'e', 'c', 'h', 'o', 0x01}, []string{"group", "active"}},
		{"crashlog", "crashlogs", "1500000000000000:8a1c", []byte{0x91, 0xa1, 'x'}, []string{"echo", "cocaine-2017-07-14"}},
		{"no tags", "profiles", "default", []byte{0x80}, nil},
		{"empty value", "runlists", "empty", []byte{}, []string{"runlist"}},
		{"nil value", "runlists", "nil", nil, nil},
		{"all byte values", "bin", "all", allBytes(), nil},
		{"slash in collection", "tvm/public_keys", "key", []byte("k"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustWrite(t, b, tc.collection, tc.key, tc.value, tc.tags...)
			got := mustRead(t, b, tc.collection, tc.key)
			if got == nil || !bytes.Equal(got, tc.value) {
				t.Fatalf("Read = %q, want %q (non-nil)", got, tc.value)
			}
			for _, tag := range tc.tags {
				if keys := mustFind(t, b, tc.collection, tag); !slices.Contains(keys, tc.key) {
					t.Errorf("Find(%q) = %q, want it to contain %q", tag, keys, tc.key)
				}
			}
			keys, err := b.Keys(tc.collection)
			if err != nil || !slices.Contains(keys, tc.key) {
				t.Errorf("Keys = %q, %v; want it to contain %q", keys, err, tc.key)
			}
		})
	}
}

func TestBoltReadNotFound(t *testing.T) {
	b := openTest(t, BoltOptions{})
	mustWrite(t, b, "apps", "other", []byte("x"))
	for _, tc := range []struct {
		name, collection, key, msg string
	}{
		{"missing collection", "manifests", "echo", "storage: read manifests/echo: no such key"},
		{"missing key", "apps", "echo", "storage: read apps/echo: no such key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := b.Read(context.Background(), tc.collection, tc.key)
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("Read = %q, %v; want ErrNotFound", v, err)
			}
			if err.Error() != tc.msg {
				t.Fatalf("message %q, want %q", err, tc.msg)
			}
		})
	}
}

func TestBoltOverwriteReplacesTags(t *testing.T) {
	b := openTest(t, BoltOptions{})
	mustWrite(t, b, "groups", "g", []byte("v1"), "group", "active", "old")
	mustWrite(t, b, "groups", "other", []byte("o"), "group", "old")
	mustWrite(t, b, "groups", "g", []byte("v2"), "group", "new", "new")

	if got := mustRead(t, b, "groups", "g"); string(got) != "v2" {
		t.Fatalf("Read = %q, want v2", got)
	}
	for _, tc := range []struct {
		tags []string
		want []string
	}{
		{[]string{"group"}, []string{"g", "other"}},
		{[]string{"new"}, []string{"g"}},
		{[]string{"active"}, []string{}},
		{[]string{"old"}, []string{"other"}},
		{[]string{"group", "old"}, []string{"other"}},
	} {
		if got := mustFind(t, b, "groups", tc.tags...); !slices.Equal(got, tc.want) {
			t.Errorf("Find(%q) = %q, want %q", tc.tags, got, tc.want)
		}
	}
	if got, want := indexedTags(t, b, "groups"), []string{"group", "new", "old"}; !slices.Equal(got, want) {
		t.Errorf("index holds %q, want %q: a dropped tag left its bucket behind", got, want)
	}

	// Writing without tags drops them all.
	mustWrite(t, b, "groups", "g", []byte("v3"))
	if got := mustFind(t, b, "groups", "group"); !slices.Equal(got, []string{"other"}) {
		t.Errorf("after untagged write, Find(group) = %q, want [other]", got)
	}
	if got, want := indexedTags(t, b, "groups"), []string{"group", "old"}; !slices.Equal(got, want) {
		t.Errorf("index holds %q, want %q", got, want)
	}
}

func TestBoltFind(t *testing.T) {
	b := openTest(t, BoltOptions{})
	mustWrite(t, b, "manifests", "echo", nil, "app")
	mustWrite(t, b, "manifests", "web", nil, "app", "web")
	mustWrite(t, b, "manifests", "api", nil, "web", "app", "v2")
	mustWrite(t, b, "manifests", "untagged", nil)
	mustWrite(t, b, "profiles", "echo", nil, "profile", "web")

	for _, tc := range []struct {
		name       string
		collection string
		tags       []string
		want       []string
	}{
		{"nil tags", "manifests", nil, []string{}},
		{"empty tags", "manifests", []string{}, []string{}},
		{"one tag", "manifests", []string{"app"}, []string{"api", "echo", "web"}},
		{"two tags, supersets match", "manifests", []string{"app", "web"}, []string{"api", "web"}},
		{"tag order does not matter", "manifests", []string{"web", "app"}, []string{"api", "web"}},
		{"three tags", "manifests", []string{"v2", "web", "app"}, []string{"api"}},
		{"repeated tag", "manifests", []string{"app", "app"}, []string{"api", "echo", "web"}},
		{"unknown tag", "manifests", []string{"nope"}, []string{}},
		{"known and unknown tag", "manifests", []string{"app", "nope"}, []string{}},
		{"tag from another collection", "manifests", []string{"profile"}, []string{}},
		{"collections are separate", "profiles", []string{"web"}, []string{"echo"}},
		{"unknown collection", "runlists", []string{"runlist"}, []string{}},
		{"empty tag cannot match", "manifests", []string{""}, []string{}},
		{"NUL tag cannot match", "manifests", []string{"app", "a\x00"}, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := mustFind(t, b, tc.collection, tc.tags...); !slices.Equal(got, tc.want) {
				t.Fatalf("Find(%q, %q) = %q, want %q", tc.collection, tc.tags, got, tc.want)
			}
		})
	}
}

// TestBoltFindIntersection checks the leapfrog join against a brute-force answer on tag
// sets that interleave, so every skip path of intersect runs.
func TestBoltFindIntersection(t *testing.T) {
	b := openTest(t, BoltOptions{})
	const n = 120
	divisors := []int{2, 3, 5, 7}
	for i := range n {
		var tags []string
		for _, d := range divisors {
			if i%d == 0 {
				tags = append(tags, fmt.Sprint("div", d))
			}
		}
		mustWrite(t, b, "c", fmt.Sprintf("k%03d", i), nil, tags...)
	}
	for _, ds := range [][]int{{2}, {2, 3}, {3, 2}, {2, 5}, {7, 5}, {2, 3, 5}, {2, 3, 5, 7}} {
		var tags []string
		want := []string{}
		for i := range n {
			all := true
			for _, d := range ds {
				all = all && i%d == 0
			}
			if all {
				want = append(want, fmt.Sprintf("k%03d", i))
			}
		}
		for _, d := range ds {
			tags = append(tags, fmt.Sprint("div", d))
		}
		if got := mustFind(t, b, "c", tags...); !slices.Equal(got, want) {
			t.Errorf("Find(%q) = %q, want %q", tags, got, want)
		}
	}
}

func TestBoltRemove(t *testing.T) {
	ctx := context.Background()
	b := openTest(t, BoltOptions{})
	mustWrite(t, b, "manifests", "echo", []byte("e"), "app")
	mustWrite(t, b, "manifests", "web", []byte("w"), "app", "web")

	for _, tc := range []struct {
		name, collection, key string
	}{
		{"missing collection", "apps", "echo"},
		{"missing key", "manifests", "nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := b.Remove(ctx, tc.collection, tc.key); err != nil {
				t.Fatalf("Remove of a missing key: %v", err)
			}
		})
	}

	if err := b.Remove(ctx, "manifests", "web"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := b.Read(ctx, "manifests", "web"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Read after Remove: %v, want ErrNotFound", err)
	}
	if got := mustFind(t, b, "manifests", "app"); !slices.Equal(got, []string{"echo"}) {
		t.Fatalf("Find(app) = %q, want [echo]", got)
	}
	if got := indexedTags(t, b, "manifests"); !slices.Equal(got, []string{"app"}) {
		t.Fatalf("index holds %q, want [app]", got)
	}
	if err := b.Remove(ctx, "manifests", "web"); err != nil {
		t.Fatalf("second Remove: %v", err)
	}

	// Removing the last key removes the collection.
	if err := b.Remove(ctx, "manifests", "echo"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if cs, err := b.Collections(); err != nil || len(cs) != 0 {
		t.Fatalf("Collections = %q, %v; want none", cs, err)
	}
	if got := mustFind(t, b, "manifests", "app"); len(got) != 0 {
		t.Fatalf("Find(app) = %q, want []", got)
	}
	// And the collection comes back on the next write.
	mustWrite(t, b, "manifests", "echo", []byte("e2"), "app")
	if got := mustFind(t, b, "manifests", "app"); !slices.Equal(got, []string{"echo"}) {
		t.Fatalf("Find(app) after rewrite = %q, want [echo]", got)
	}
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

func TestBoltInvalidNames(t *testing.T) {
	ctx := context.Background()
	b := openTest(t, BoltOptions{})
	long := strings.Repeat("x", MaxNameSize+1)
	for _, tc := range []struct {
		name string
		op   func() error
	}{
		{"read empty collection", func() error { _, err := b.Read(ctx, "", "k"); return err }},
		{"read NUL key", func() error { _, err := b.Read(ctx, "c", "k\x00"); return err }},
		{"write empty key", func() error { return b.Write(ctx, "c", "", nil, nil) }},
		{"write long collection", func() error { return b.Write(ctx, long, "k", nil, nil) }},
		{"write meta bucket", func() error { return b.Write(ctx, "\x00meta", "version", nil, nil) }},
		{"write empty tag", func() error { return b.Write(ctx, "c", "k", nil, []string{"app", ""}) }},
		{"write long tag", func() error { return b.Write(ctx, "c", "k", nil, []string{long}) }},
		{"write NUL tag", func() error { return b.Write(ctx, "c", "k", nil, []string{"\x00"}) }},
		{"remove long key", func() error { return b.Remove(ctx, "c", long) }},
		{"remove empty collection", func() error { return b.Remove(ctx, "", "k") }},
		{"find empty collection", func() error { _, err := b.Find(ctx, "", []string{"app"}); return err }},
		{"find NUL collection", func() error { _, err := b.Find(ctx, "\x00meta", []string{"app"}); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.op(); !errors.Is(err, ErrInvalidName) {
				t.Fatalf("got %v, want ErrInvalidName", err)
			}
		})
	}
	if cs, err := b.Collections(); err != nil || len(cs) != 0 {
		t.Fatalf("Collections = %q, %v after rejected writes; want none", cs, err)
	}
}

func TestBoltTooLarge(t *testing.T) {
	ctx := context.Background()
	t.Run("configured limit", func(t *testing.T) {
		b := openTest(t, BoltOptions{MaxValueSize: 1024})
		mustWrite(t, b, "apps", "fits", make([]byte, 1024))
		err := b.Write(ctx, "apps", "big", make([]byte, 1025), []string{"app"})
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Write: %v, want ErrTooLarge", err)
		}
		if want := "storage: write apps/big: value too large: 1025 bytes, the limit is 1024"; err.Error() != want {
			t.Fatalf("message %q, want %q", err, want)
		}
		if _, err := b.Read(ctx, "apps", "big"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("rejected value was stored: %v", err)
		}
		if got := mustFind(t, b, "apps", "app"); len(got) != 0 {
			t.Fatalf("rejected value was indexed: %q", got)
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

func TestBoltClosed(t *testing.T) {
	ctx := context.Background()
	b, err := OpenBolt(filepath.Join(t.TempDir(), "storage.db"), BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, b, "c", "k", []byte("v"), "t")
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, tc := range []struct {
		name string
		op   func() error
	}{
		{"read", func() error { _, err := b.Read(ctx, "c", "k"); return err }},
		{"write", func() error { return b.Write(ctx, "c", "k", nil, nil) }},
		{"remove", func() error { return b.Remove(ctx, "c", "k") }},
		{"find", func() error { _, err := b.Find(ctx, "c", []string{"t"}); return err }},
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

func TestBoltContextCanceled(t *testing.T) {
	b := openTest(t, BoltOptions{})
	mustWrite(t, b, "c", "k", []byte("v"), "t")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		op   func() error
	}{
		{"read", func() error { _, err := b.Read(ctx, "c", "k"); return err }},
		{"write", func() error { return b.Write(ctx, "c", "k", []byte("new"), nil) }},
		{"remove", func() error { return b.Remove(ctx, "c", "k") }},
		{"find", func() error { _, err := b.Find(ctx, "c", []string{"t"}); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.op(); !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v, want context.Canceled", err)
			}
		})
	}
	// Nothing was applied.
	if got := mustRead(t, b, "c", "k"); string(got) != "v" {
		t.Fatalf("Read = %q, want v", got)
	}
	if got := mustFind(t, b, "c", "t"); !slices.Equal(got, []string{"k"}) {
		t.Fatalf("Find = %q, want [k]", got)
	}
}

func TestBoltCopies(t *testing.T) {
	b := openTest(t, BoltOptions{})
	in := []byte("original")
	mustWrite(t, b, "c", "k", in)
	copy(in, "CHANGED!")
	out := mustRead(t, b, "c", "k")
	if string(out) != "original" {
		t.Fatalf("Read = %q: the store kept the caller's slice", out)
	}
	copy(out, "CHANGED!")
	if got := mustRead(t, b, "c", "k"); string(got) != "original" {
		t.Fatalf("Read = %q: Read returned the store's memory", got)
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

func TestBoltBinaryNames(t *testing.T) {
	b := openTest(t, BoltOptions{})
	name := string(allBytesButNUL())
	value := allBytes()
	tags := []string{name, "\xff\xfe", "\x01"}
	mustWrite(t, b, name, name, value, tags...)
	mustWrite(t, b, name, "\xff", value, "\x01")

	if got := mustRead(t, b, name, name); !bytes.Equal(got, value) {
		t.Fatalf("Read = %x, want %x", got, value)
	}
	if got := mustFind(t, b, name, tags...); !slices.Equal(got, []string{name}) {
		t.Fatalf("Find(all tags) = %q, want [name]", got)
	}
	// Sorted bytewise, so 0x01... comes before 0xff.
	if got := mustFind(t, b, name, "\x01"); !slices.Equal(got, []string{name, "\xff"}) {
		t.Fatalf("Find(\\x01) = %q", got)
	}
	cs, err := b.Collections()
	if err != nil || !slices.Equal(cs, []string{name}) {
		t.Fatalf("Collections = %q, %v", cs, err)
	}
	_, err = b.Read(context.Background(), name, "missing")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Read(missing) = %v", err)
	}
	if strings.ContainsRune(err.Error(), '\n') {
		t.Fatalf("error message carries a raw control byte: %q", err)
	}
}

// TestBoltConcurrent runs writers, removers, readers and finders at once; run it with
// -race. Each writer owns its keys, so the final state is known.
func TestBoltConcurrent(t *testing.T) {
	ctx := context.Background()
	b := openTest(t, BoltOptions{})
	const writers, rounds = 6, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				key := fmt.Sprintf("w%d-k%d", w, r%5)
				value := []byte(fmt.Sprintf("w%d-r%d", w, r))
				tags := []string{"all", fmt.Sprint("w", w)}
				if r%2 == 1 {
					tags = append(tags, "odd")
				}
				if err := b.Write(ctx, "c", key, value, tags); err != nil {
					t.Errorf("Write: %v", err)
					return
				}
				if r%7 == 6 {
					if err := b.Remove(ctx, "c", key); err != nil {
						t.Errorf("Remove: %v", err)
						return
					}
				}
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for i := range 200 {
				key := fmt.Sprintf("w%d-k%d", i%writers, i%5)
				v, err := b.Read(ctx, "c", key)
				if err != nil && !errors.Is(err, ErrNotFound) {
					t.Errorf("Read: %v", err)
					return
				}
				if err == nil && !bytes.HasPrefix(v, []byte(key[:strings.IndexByte(key, '-')+1]+"r")) {
					t.Errorf("Read(%s) = %q: a value from another writer", key, v)
					return
				}
				keys, err := b.Find(ctx, "c", []string{"all", "odd"})
				if err != nil {
					t.Errorf("Find: %v", err)
					return
				}
				if !slices.IsSorted(keys) {
					t.Errorf("Find = %q, not sorted", keys)
					return
				}
			}
		})
	}
	wg.Wait()

	// Each writer's last round was 24: k0..k4 were last written in rounds 20..24, and
	// round 20 (k0) was followed by its remove, so k1..k4 remain, odd in rounds 21, 23.
	for w := range writers {
		got := mustFind(t, b, "c", fmt.Sprint("w", w))
		want := []string{fmt.Sprintf("w%d-k1", w), fmt.Sprintf("w%d-k2", w), fmt.Sprintf("w%d-k3", w), fmt.Sprintf("w%d-k4", w)}
		if !slices.Equal(got, want) {
			t.Errorf("Find(w%d) = %q, want %q", w, got, want)
		}
		got = mustFind(t, b, "c", fmt.Sprint("w", w), "odd")
		want = []string{fmt.Sprintf("w%d-k1", w), fmt.Sprintf("w%d-k3", w)}
		if !slices.Equal(got, want) {
			t.Errorf("Find(w%d, odd) = %q, want %q", w, got, want)
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
