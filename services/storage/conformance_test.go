package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

// The Backend conformance suite: what the Backend interface documents, checked the same
// way for every implementation (TestBoltConformance, TestReplicatedConformance).

// backendUnderTest is a backend for the suite, with views under its API that let the
// suite check that what it removes leaves nothing behind.
type backendUnderTest struct {
	Backend
	// collections lists the collections holding at least one key, sorted.
	collections func(t *testing.T) []string
	// indexedTags lists the tags of collection's index, sorted.
	indexedTags func(t *testing.T, collection string) []string
}

// openBackend opens an empty backend whose value limit is maxValueSize (the backend's
// default if 0) and closes it when the test ends.
type openBackend func(t *testing.T, maxValueSize int) backendUnderTest

// runConformance runs the suite against the backends open returns.
func runConformance(t *testing.T, open openBackend) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, open openBackend)
	}{
		{"RoundTrip", testRoundTrip},
		{"ReadNotFound", testReadNotFound},
		{"OverwriteReplacesTags", testOverwriteReplacesTags},
		{"Find", testFind},
		{"FindIntersection", testFindIntersection},
		{"Remove", testRemove},
		{"InvalidNames", testInvalidNames},
		{"TooLarge", testTooLarge},
		{"Closed", testClosed},
		{"ContextCanceled", testContextCanceled},
		{"Copies", testCopies},
		{"BinaryNames", testBinaryNames},
		{"Concurrent", testConcurrent},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, open) })
	}
}

func mustWrite(t testing.TB, b Backend, collection, key string, value []byte, tags ...string) {
	t.Helper()
	if err := b.Write(context.Background(), collection, key, value, tags); err != nil {
		t.Fatalf("Write(%q, %q): %v", collection, key, err)
	}
}

func mustRead(t testing.TB, b Backend, collection, key string) []byte {
	t.Helper()
	v, err := b.Read(context.Background(), collection, key)
	if err != nil {
		t.Fatalf("Read(%q, %q): %v", collection, key, err)
	}
	return v
}

func mustFind(t testing.TB, b Backend, collection string, tags ...string) []string {
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

func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func testRoundTrip(t *testing.T, open openBackend) {
	b := open(t, 0)
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
			if cs := b.collections(t); !slices.Contains(cs, tc.collection) {
				t.Errorf("collections = %q, want it to contain %q", cs, tc.collection)
			}
		})
	}
}

func testReadNotFound(t *testing.T, open openBackend) {
	b := open(t, 0)
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

func testOverwriteReplacesTags(t *testing.T, open openBackend) {
	b := open(t, 0)
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
	if got, want := b.indexedTags(t, "groups"), []string{"group", "new", "old"}; !slices.Equal(got, want) {
		t.Errorf("index holds %q, want %q: a dropped tag left its entry behind", got, want)
	}

	// Writing without tags drops them all.
	mustWrite(t, b, "groups", "g", []byte("v3"))
	if got := mustFind(t, b, "groups", "group"); !slices.Equal(got, []string{"other"}) {
		t.Errorf("after untagged write, Find(group) = %q, want [other]", got)
	}
	if got, want := b.indexedTags(t, "groups"), []string{"group", "old"}; !slices.Equal(got, want) {
		t.Errorf("index holds %q, want %q", got, want)
	}
}

func testFind(t *testing.T, open openBackend) {
	b := open(t, 0)
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

// testFindIntersection checks intersections against a brute-force answer on tag sets that
// interleave, so that every skip path of the bolt leapfrog join and every choice of the
// smallest set in the replicated one runs.
func testFindIntersection(t *testing.T, open openBackend) {
	b := open(t, 0)
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
	for _, ds := range [][]int{{2}, {2, 3}, {3, 2}, {2, 5}, {7, 5}, {2, 3, 5}, {2, 3, 5, 7}, {7, 3, 2}} {
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

func testRemove(t *testing.T, open openBackend) {
	ctx := context.Background()
	b := open(t, 0)
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
	if got := b.indexedTags(t, "manifests"); !slices.Equal(got, []string{"app"}) {
		t.Fatalf("index holds %q, want [app]", got)
	}
	if err := b.Remove(ctx, "manifests", "web"); err != nil {
		t.Fatalf("second Remove: %v", err)
	}

	// Removing the last key removes the collection.
	if err := b.Remove(ctx, "manifests", "echo"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if cs := b.collections(t); len(cs) != 0 {
		t.Fatalf("collections = %q; want none", cs)
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

func testInvalidNames(t *testing.T, open openBackend) {
	ctx := context.Background()
	b := open(t, 0)
	long := strings.Repeat("x", MaxNameSize+1)
	many := make([]string, MaxTags+1)
	for i := range many {
		many[i] = fmt.Sprint("t", i)
	}
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
		{"write too many tags", func() error { return b.Write(ctx, "c", "k", nil, many) }},
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
	if cs := b.collections(t); len(cs) != 0 {
		t.Fatalf("collections = %q after rejected writes; want none", cs)
	}
}

func testTooLarge(t *testing.T, open openBackend) {
	ctx := context.Background()
	b := open(t, 1024)
	mustWrite(t, b, "apps", "fits", make([]byte, 1024))
	err := b.Write(ctx, "apps", "big", make([]byte, 1025), []string{"app"})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Write: %v, want ErrTooLarge", err)
	}
	// Backends may add advice after the sizes.
	if want := "storage: write apps/big: value too large: 1025 bytes, the limit is 1024"; !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("message %q, want it to start with %q", err, want)
	}
	if _, err := b.Read(ctx, "apps", "big"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rejected value was stored: %v", err)
	}
	if got := mustFind(t, b, "apps", "app"); len(got) != 0 {
		t.Fatalf("rejected value was indexed: %q", got)
	}
}

func testClosed(t *testing.T, open openBackend) {
	ctx := context.Background()
	b := open(t, 0)
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.op(); !errors.Is(err, ErrClosed) {
				t.Fatalf("got %v, want ErrClosed", err)
			}
		})
	}
}

func testContextCanceled(t *testing.T, open openBackend) {
	b := open(t, 0)
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

func testCopies(t *testing.T, open openBackend) {
	b := open(t, 0)
	in := []byte("original")
	tags := []string{"b", "a"}
	mustWrite(t, b, "c", "k", in, tags...)
	copy(in, "CHANGED!")
	tags[0] = "z"
	out := mustRead(t, b, "c", "k")
	if string(out) != "original" {
		t.Fatalf("Read = %q: the store kept the caller's slice", out)
	}
	copy(out, "CHANGED!")
	if got := mustRead(t, b, "c", "k"); string(got) != "original" {
		t.Fatalf("Read = %q: Read returned the store's memory", got)
	}
	if got := mustFind(t, b, "c", "b"); !slices.Equal(got, []string{"k"}) {
		t.Fatalf("Find(b) = %q: the store kept the caller's tags", got)
	}
	found := mustFind(t, b, "c", "a")
	found[0] = "mutated"
	if got := mustFind(t, b, "c", "a"); !slices.Equal(got, []string{"k"}) {
		t.Fatalf("Find(a) = %q: Find returned the store's memory", got)
	}
}

func testBinaryNames(t *testing.T, open openBackend) {
	b := open(t, 0)
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
	if cs := b.collections(t); !slices.Equal(cs, []string{name}) {
		t.Fatalf("collections = %q", cs)
	}
	_, err := b.Read(context.Background(), name, "missing")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Read(missing) = %v", err)
	}
	if strings.ContainsRune(err.Error(), '\n') {
		t.Fatalf("error message carries a raw control byte: %q", err)
	}
}

// testConcurrent runs writers, removers, readers and finders at once; run it with -race.
// Each writer owns its keys, so the final state is known.
func testConcurrent(t *testing.T, open openBackend) {
	ctx := context.Background()
	b := open(t, 0)
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
