package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/cocaine/cocaine/rpc"
)

// newState returns an empty state with the default config.
func newState(t testing.TB) *ReplicatedState {
	t.Helper()
	s, err := NewReplicatedState(ReplicatedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// snapshotBytes returns what a snapshot of s persists.
func snapshotBytes(t testing.TB, s *ReplicatedState) []byte {
	t.Helper()
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	var buf bytes.Buffer
	if err := snap.Persist(&buf); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	return buf.Bytes()
}

// checkState checks the invariants of s: no empty collection, values never nil unless a
// blob holds them, tags sorted and unique, an index that lists exactly the keys carrying
// each tag, with no empty set, and a blob table with exactly the referenced blobs, each
// with its number of references, its size and sorted, unique holders.
func checkState(s *ReplicatedState) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	refs := map[Digest]int{}
	for name, c := range s.collections {
		if len(c.entries) == 0 {
			return fmt.Errorf("collection %q is empty", name)
		}
		want := map[string]map[string]struct{}{}
		for key, e := range c.entries {
			if (e.value == nil) == (e.blob == nil) {
				return fmt.Errorf("%q/%q: value %v and blob %v", name, key, e.value, e.blob)
			}
			if e.blob != nil {
				refs[e.blob.digest]++
				if info, ok := s.blobs[e.blob.digest]; !ok || info.size != e.blob.size {
					return fmt.Errorf("%q/%q: blob %s of %d bytes, the table has %+v", name, key, e.blob.digest, e.blob.size, info)
				}
			}
			if e.tags != nil && len(e.tags) == 0 {
				return fmt.Errorf("%q/%q: empty non-nil tags", name, key)
			}
			if !slices.IsSorted(e.tags) || len(slices.Compact(slices.Clone(e.tags))) != len(e.tags) {
				return fmt.Errorf("%q/%q: tags %q not sorted and unique", name, key, e.tags)
			}
			for _, tag := range e.tags {
				if want[tag] == nil {
					want[tag] = map[string]struct{}{}
				}
				want[tag][key] = struct{}{}
			}
		}
		if !maps.EqualFunc(c.index, want, maps.Equal) {
			return fmt.Errorf("collection %q: index %v, want %v", name, c.index, want)
		}
	}
	if len(refs) != len(s.blobs) {
		return fmt.Errorf("%d blobs referenced, the table has %d", len(refs), len(s.blobs))
	}
	for d, info := range s.blobs {
		if info.refs != refs[d] {
			return fmt.Errorf("blob %s: %d references counted, %d made", d, info.refs, refs[d])
		}
		if len(info.holders) == 0 || len(info.holders) > MaxBlobHolders {
			return fmt.Errorf("blob %s: %d holders", d, len(info.holders))
		}
		for i := 1; i < len(info.holders); i++ {
			if info.holders[i-1].host >= info.holders[i].host {
				return fmt.Errorf("blob %s: holders not sorted and unique", d)
			}
		}
	}
	return nil
}

// readValue returns the inline value of collection/key, and whether there is one.
func readValue(s *ReplicatedState, collection, key string) ([]byte, bool) {
	v, ref, _, ok := s.read(collection, key)
	return v, ok && ref == nil
}

func mustApply(t testing.TB, s *ReplicatedState, cmd []byte) {
	t.Helper()
	if err := decodeResult(s.Apply(1, cmd)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func writeCmd(collection, key, value string, tags ...string) []byte {
	return appendWriteCommand(nil, collection, key, []byte(value), normalizeTags(tags))
}

func TestReplicatedConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ReplicatedConfig
		bad  bool
	}{
		{"zero", ReplicatedConfig{}, false},
		{"at the cap", ReplicatedConfig{MaxValueSize: MaxReplicatedValueSize}, false},
		{"negative", ReplicatedConfig{MaxValueSize: -1}, true},
		{"over the cap", ReplicatedConfig{MaxValueSize: MaxReplicatedValueSize + 1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err != nil) != tc.bad {
				t.Fatalf("Validate = %v, want an error: %v", err, tc.bad)
			}
			if err != nil && !strings.Contains(err.Error(), "MaxValueSize") {
				t.Fatalf("Validate = %v, does not name MaxValueSize", err)
			}
			if _, err := NewReplicatedState(tc.cfg); (err != nil) != tc.bad {
				t.Fatalf("NewReplicatedState = %v", err)
			}
		})
	}
	if s := newState(t); s.maxValueSize != DefaultReplicatedValueSize {
		t.Fatalf("default limit %d, want %d", s.maxValueSize, DefaultReplicatedValueSize)
	}
}

func TestCommandRoundTrip(t *testing.T) {
	for _, want := range []command{
		{op: opWrite, collection: "apps", key: "echo", value: []byte{}, tags: nil},
		{op: opWrite, collection: "c", key: "k", value: allBytes(), tags: normalizeTags([]string{"a", "b", string(allBytesButNUL())})},
		{op: opWrite, collection: strings.Repeat("c", MaxNameSize), key: "k", value: make([]byte, 70000)},
		{op: opRemove, collection: "apps", key: "echo"},
	} {
		var b []byte
		if want.op == opWrite {
			b = appendWriteCommand(nil, want.collection, want.key, want.value, want.tags)
		} else {
			b = appendRemoveCommand(nil, want.collection, want.key)
		}
		got, err := decodeCommand(b)
		if err != nil {
			t.Fatalf("decodeCommand: %v", err)
		}
		if got.op != want.op || got.collection != want.collection || got.key != want.key ||
			!bytes.Equal(got.value, want.value) || !slices.Equal(got.tags, want.tags) {
			t.Fatalf("round trip = %+v, want %+v", got, want)
		}
	}
	// The encoding is compact: a remove of apps/echo is 1+1+1+5+5 bytes.
	if got := appendRemoveCommand(nil, "apps", "echo"); !bytes.Equal(got, []byte("\x94\x01\x02\xa4apps\xa4echo")) {
		t.Fatalf("remove command % x", got)
	}
}

// encode builds a msgpack array from values, for hand-made commands and snapshots.
func encode(t testing.TB, values ...any) []byte {
	t.Helper()
	b, err := rpc.AppendArgs(nil, values...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestApplyRejects(t *testing.T) {
	tooManyTags := manyTags(MaxTags + 1)
	for _, tc := range []struct {
		name string
		cmd  []byte
		want error
	}{
		{"empty", nil, ErrCorrupt},
		{"reserved byte", []byte{0xc1}, ErrCorrupt},
		{"not an array", []byte{0x01}, ErrCorrupt},
		{"empty array", []byte{0x90}, ErrCorrupt},
		{"version only", []byte{0x91, 0x01}, ErrCorrupt},
		{"version 3", encode(t, 3, 1, "c", "k", []byte("v"), []string{}), ErrUnsupportedVersion},
		{"version not a number", encode(t, "1", 1, "c", "k"), ErrCorrupt},
		{"unknown operation", encode(t, 1, 3, "c", "k"), ErrCorrupt},
		{"write without tags", encode(t, 1, opWrite, "c", "k", []byte("v")), ErrCorrupt},
		{"remove with a value", encode(t, 1, opRemove, "c", "k", []byte("v")), ErrCorrupt},
		{"collection not a raw", encode(t, 1, opRemove, 5, "k"), ErrCorrupt},
		{"empty key", encode(t, 1, opRemove, "c", ""), ErrInvalidName},
		{"NUL in collection", encode(t, 1, opWrite, "c\x00", "k", []byte("v"), []string{}), ErrInvalidName},
		{"long key", encode(t, 1, opRemove, "c", strings.Repeat("k", MaxNameSize+1)), ErrInvalidName},
		{"value not a raw", encode(t, 1, opWrite, "c", "k", 7, []string{}), ErrCorrupt},
		{"tags not an array", encode(t, 1, opWrite, "c", "k", []byte("v"), "t"), ErrCorrupt},
		{"tag not a raw", encode(t, 1, opWrite, "c", "k", []byte("v"), []any{1}), ErrCorrupt},
		{"unsorted tags", encode(t, 1, opWrite, "c", "k", []byte("v"), []string{"b", "a"}), ErrCorrupt},
		{"duplicate tags", encode(t, 1, opWrite, "c", "k", []byte("v"), []string{"a", "a"}), ErrCorrupt},
		{"empty tag", encode(t, 1, opWrite, "c", "k", []byte("v"), []string{""}), ErrInvalidName},
		{"too many tags", encode(t, 1, opWrite, "c", "k", []byte("v"), tooManyTags), ErrInvalidName},
		{"value over the cap", encode(t, 1, opWrite, "c", "k", make([]byte, MaxReplicatedValueSize+1), []string{}), ErrTooLarge},
		{"trailing bytes", append(writeCmd("c", "k", "v"), 0x00), ErrCorrupt},
		{"truncated", writeCmd("c", "k", "value")[:10], ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newState(t)
			mustApply(t, s, writeCmd("c", "k", "old", "t"))
			before := snapshotBytes(t, s)
			err := decodeResult(s.Apply(2, tc.cmd))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Apply result %v, want %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "storage: ") {
				t.Fatalf("message %q lacks the package prefix", err)
			}
			if after := snapshotBytes(t, s); !bytes.Equal(before, after) {
				t.Fatal("a rejected command changed the state")
			}
		})
	}
}

// The state applies any value up to the cap, whatever its own admission limit: the limit
// is per host, and a replica must apply what the cluster committed.
func TestApplyIgnoresAdmissionLimit(t *testing.T) {
	s, err := NewReplicatedState(ReplicatedConfig{MaxValueSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, appendWriteCommand(nil, "c", "k", make([]byte, MaxReplicatedValueSize), nil))
	if v, ok := readValue(s, "c", "k"); !ok || len(v) != MaxReplicatedValueSize {
		t.Fatalf("read %d bytes, %v", len(v), ok)
	}
}

func TestResultCodes(t *testing.T) {
	if err := decodeResult(appendAppliedResult(nil)); err != nil {
		t.Fatalf("applied result: %v", err)
	}
	seen := map[uint64]bool{}
	for _, rc := range resultCodes {
		if seen[rc.code] {
			t.Fatalf("code %d used twice", rc.code)
		}
		seen[rc.code] = true
		in := fmt.Errorf("%w: detail", rc.err)
		out := decodeResult(appendRejectedResult(nil, in))
		if !errors.Is(out, rc.err) || out.Error() != in.Error() {
			t.Fatalf("round trip of %v = %v", in, out)
		}
	}
	// An error outside the table travels as ErrCorrupt.
	if err := decodeResult(appendRejectedResult(nil, errors.New("other"))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("foreign error = %v, want ErrCorrupt", err)
	}
	for _, bad := range [][]byte{nil, {0xc0}, {0x91, 0x01}, {0x90, 0x90}, {0x92, 0x01}, {0x92, 0x09, 0xa1, 'x'}, {0x92, 0xa1, 'x', 0x01}, {0x92, 0x01, 0xa1, 'x', 0x00}} {
		if err := decodeResult(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decodeResult(% x) = %v, want ErrCorrupt", bad, err)
		}
	}
}

// model is the obvious implementation the state is checked against.
type model map[string]map[string]modelEntry

type modelEntry struct {
	value string
	blob  *Digest // set for a blob reference, and value is empty
	tags  []string
}

func (m model) find(collection string, tags []string) []string {
	keys := []string{}
	if len(tags) == 0 {
		return keys
	}
	for key, e := range m[collection] {
		all := true
		for _, tag := range tags {
			all = all && slices.Contains(e.tags, tag)
		}
		if all {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	return keys
}

// randomCommands returns n commands over a small name space, so that keys and tags
// collide often; some are invalid.
func randomCommands(rng *rand.Rand, n int) [][]byte {
	pick := func(prefix string, k int) string { return fmt.Sprint(prefix, rng.IntN(k)) }
	cmds := make([][]byte, n)
	for i := range cmds {
		collection, key := pick("c", 3), pick("k", 8)
		switch rng.IntN(13) {
		case 0, 1, 2:
			cmds[i] = appendRemoveCommand(nil, collection, key)
		case 3:
			cmds[i] = []byte{0x93, 0x01, 0x09, 0x00} // rejected, as invalid commands are
		case 4, 5:
			// Four blobs, each with its own size, held by some of three hosts.
			n := rng.IntN(4)
			ref := blobRef{digest: DigestOf([]byte{byte(n)}), size: int64(10 * (n + 1))}
			cmds[i] = appendWriteBlobCommand(nil, collection, key, ref, []holder{testHolder(pick("h", 3), 1+rng.IntN(2))}, normalizeTags([]string{pick("t", 5)}))
		case 6:
			var digests []Digest
			for n := range 4 {
				if rng.IntN(2) == 0 {
					digests = append(digests, DigestOf([]byte{byte(n)}))
				}
			}
			if len(digests) == 0 {
				digests = append(digests, DigestOf([]byte{9})) // no such blob: skipped
			}
			slices.SortFunc(digests, func(a, b Digest) int { return bytes.Compare(a[:], b[:]) })
			cmds[i] = appendHoldCommand(nil, testHolder(pick("h", 3), 1+rng.IntN(2)), digests)
		default:
			var tags []string
			for range rng.IntN(4) {
				tags = append(tags, pick("t", 5))
			}
			cmds[i] = writeCmd(collection, key, fmt.Sprint("v", i), tags...)
		}
	}
	return cmds
}

// TestReplicatedStateModel applies random commands to a state and to a model, comparing
// every read and find, and the invariants, as it goes.
func TestReplicatedStateModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	s, m := newState(t), model{}
	for i, cmd := range randomCommands(rng, 2000) {
		res := s.Apply(uint64(i+1), cmd)
		if c, err := decodeCommand(cmd); err == nil {
			if err := decodeResult(res); err != nil {
				t.Fatalf("command %d: %v", i, err)
			}
			switch c.op {
			case opWrite, opWriteBlob:
				if m[c.collection] == nil {
					m[c.collection] = map[string]modelEntry{}
				}
				e := modelEntry{value: string(c.value), tags: c.tags}
				if c.op == opWriteBlob {
					e.blob = &c.blob.digest
				}
				m[c.collection][c.key] = e
			case opRemove:
				delete(m[c.collection], c.key)
				if len(m[c.collection]) == 0 {
					delete(m, c.collection)
				}
			}
		}
		if i%50 != 0 {
			continue
		}
		if err := checkState(s); err != nil {
			t.Fatalf("after command %d: %v", i, err)
		}
		for c := range 3 {
			collection := fmt.Sprint("c", c)
			for k := range 8 {
				key := fmt.Sprint("k", k)
				v, ref, _, ok := s.read(collection, key)
				e, want := m[collection][key]
				if ok != want || string(v) != e.value || (ref == nil) != (e.blob == nil) || ref != nil && ref.digest != *e.blob {
					t.Fatalf("after command %d: read %s/%s = %q, %v, %v; want %+v, %v", i, collection, key, v, ref, ok, e, want)
				}
			}
			for _, tags := range [][]string{{"t0"}, {"t1", "t2"}, {"t3", "t4", "t0"}, {"t9"}} {
				if got, want := s.find(collection, tags), m.find(collection, tags); !slices.Equal(got, want) {
					t.Fatalf("after command %d: find %s %q = %q, want %q", i, collection, tags, got, want)
				}
			}
		}
	}
	if got := len(s.collections); got != len(m) {
		t.Fatalf("%d collections, the model has %d", got, len(m))
	}
}

// Two states fed the same commands write the same snapshot bytes, and so does a state
// restored from that snapshot, or one that reached the same data in another order.
func TestReplicatedStateDeterminism(t *testing.T) {
	cmds := randomCommands(rand.New(rand.NewPCG(5, 6)), 1000)
	a, b := newState(t), newState(t)
	for i, cmd := range cmds {
		ra, rb := a.Apply(uint64(i+1), cmd), b.Apply(uint64(i+1), cmd)
		if !bytes.Equal(ra, rb) {
			t.Fatalf("command %d: results % x and % x", i, ra, rb)
		}
	}
	sa, sb := snapshotBytes(t, a), snapshotBytes(t, b)
	if !bytes.Equal(sa, sb) {
		t.Fatal("the snapshots of two states fed the same commands differ")
	}
	c := newState(t)
	if err := c.Restore(bytes.NewReader(sa), uint64(len(cmds))); err != nil {
		t.Fatal(err)
	}
	if sc := snapshotBytes(t, c); !bytes.Equal(sa, sc) {
		t.Fatal("a restored state writes another snapshot")
	}

	x, y := newState(t), newState(t)
	mustApply(t, x, writeCmd("c", "a", "1", "t", "u"))
	mustApply(t, x, writeCmd("c", "b", "2", "u"))
	mustApply(t, x, writeCmd("d", "a", "3"))
	mustApply(t, y, writeCmd("d", "a", "3"))
	mustApply(t, y, writeCmd("c", "b", "0", "v"))
	mustApply(t, y, writeCmd("c", "b", "2", "u"))
	mustApply(t, y, writeCmd("c", "z", "gone", "t"))
	mustApply(t, y, writeCmd("c", "a", "1", "u", "t"))
	mustApply(t, y, appendRemoveCommand(nil, "c", "z"))
	if !bytes.Equal(snapshotBytes(t, x), snapshotBytes(t, y)) {
		t.Fatal("the same data reached in another order gives another snapshot")
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	a := newState(t)
	mustApply(t, a, writeCmd("manifests", "echo", "m", "app"))
	mustApply(t, a, writeCmd("manifests", "web", "w", "app", "web"))
	mustApply(t, a, appendWriteCommand(nil, "bin", string(allBytesButNUL()), allBytes(), []string{"\x01", "\xff"}))
	mustApply(t, a, writeCmd("empty", "e", ""))
	snap, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Changes after Snapshot returns are not in it.
	mustApply(t, a, writeCmd("manifests", "echo", "changed"))
	mustApply(t, a, appendRemoveCommand(nil, "manifests", "web"))
	mustApply(t, a, writeCmd("later", "k", "v"))
	var buf bytes.Buffer
	if err := snap.Persist(&buf); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	b := newState(t)
	mustApply(t, b, writeCmd("old", "k", "v", "t")) // replaced whole by the restore
	if err := b.Restore(&buf, 4); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if err := checkState(b); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		collection, key, value string
		ok                     bool
	}{
		{"manifests", "echo", "m", true},
		{"manifests", "web", "w", true},
		{"bin", string(allBytesButNUL()), string(allBytes()), true},
		{"empty", "e", "", true},
		{"later", "k", "", false},
		{"old", "k", "", false},
	} {
		v, ok := readValue(b, tc.collection, tc.key)
		if ok != tc.ok || string(v) != tc.value || ok && v == nil {
			t.Errorf("read %q/%q = %q, %v; want %q, %v", tc.collection, tc.key, v, ok, tc.value, tc.ok)
		}
	}
	if got := b.find("manifests", []string{"app"}); !slices.Equal(got, []string{"echo", "web"}) {
		t.Errorf("find app = %q", got)
	}
	if got := b.find("bin", []string{"\xff", "\x01"}); !slices.Equal(got, []string{string(allBytesButNUL())}) {
		t.Errorf("find in bin = %q", got)
	}
	if got := b.find("old", []string{"t"}); len(got) != 0 {
		t.Errorf("find in the replaced state = %q", got)
	}

	// An empty state has a snapshot too.
	e := newState(t)
	if err := e.Restore(bytes.NewReader(snapshotBytes(t, newState(t))), 0); err != nil {
		t.Fatalf("Restore of an empty snapshot: %v", err)
	}
}

// manyTags returns n distinct tags, sorted.
func manyTags(n int) []string {
	tags := make([]string, n)
	for i := range tags {
		tags[i] = fmt.Sprintf("t%04d", i)
	}
	return tags
}

// snapshotOf persists records, each a msgpack array given as values.
func snapshotOf(t testing.TB, records ...[]any) []byte {
	var b []byte
	for _, r := range records {
		b = append(b, encode(t, r...)...)
	}
	return b
}

func TestRestoreRejects(t *testing.T) {
	hdr := func(n int) []any { return []any{snapshotMagic, snapshotVersion, n} }
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrCorrupt},
		{"not msgpack", []byte{0xc1}, ErrCorrupt},
		{"header not an array", []byte{0x01}, ErrCorrupt},
		{"short header", snapshotOf(t, []any{snapshotMagic}), ErrCorrupt},
		{"wrong magic", snapshotOf(t, []any{"cocaine-unicorn", 1, 0}), ErrCorrupt},
		{"version 3", snapshotOf(t, []any{snapshotMagic, 3, 0, 0}), ErrUnsupportedVersion},
		{"version 2 with a short header", snapshotOf(t, []any{snapshotMagic, 2, 0}), ErrCorrupt},
		{"long header", snapshotOf(t, []any{snapshotMagic, 1, 0, 0}), ErrCorrupt},
		{"negative count", snapshotOf(t, []any{snapshotMagic, 1, -1}), ErrCorrupt},
		{"missing collection", snapshotOf(t, hdr(1)), ErrCorrupt},
		{"missing entry", snapshotOf(t, hdr(1), []any{"c", 2}, []any{"a", []byte("v"), []string{}}), ErrCorrupt},
		{"empty collection", snapshotOf(t, hdr(1), []any{"c", 0}), ErrCorrupt},
		{"collection record too long", snapshotOf(t, hdr(1), []any{"c", 1, 0}, []any{"a", []byte("v"), []string{}}), ErrCorrupt},
		{"collections out of order", snapshotOf(t, hdr(2), []any{"d", 1}, []any{"a", []byte("v"), []string{}}, []any{"c", 1}, []any{"a", []byte("v"), []string{}}), ErrCorrupt},
		{"duplicate collection", snapshotOf(t, hdr(2), []any{"c", 1}, []any{"a", []byte("v"), []string{}}, []any{"c", 1}, []any{"b", []byte("v"), []string{}}), ErrCorrupt},
		{"keys out of order", snapshotOf(t, hdr(1), []any{"c", 2}, []any{"b", []byte("v"), []string{}}, []any{"a", []byte("v"), []string{}}), ErrCorrupt},
		{"duplicate key", snapshotOf(t, hdr(1), []any{"c", 2}, []any{"a", []byte("v"), []string{}}, []any{"a", []byte("w"), []string{}}), ErrCorrupt},
		{"invalid collection", snapshotOf(t, hdr(1), []any{"c\x00", 1}, []any{"a", []byte("v"), []string{}}), ErrCorrupt},
		{"invalid key", snapshotOf(t, hdr(1), []any{"c", 1}, []any{"", []byte("v"), []string{}}), ErrCorrupt},
		{"too many tags", snapshotOf(t, hdr(1), []any{"c", 1}, []any{"a", []byte("v"), manyTags(MaxTags + 1)}), ErrCorrupt},
		{"unsorted tags", snapshotOf(t, hdr(1), []any{"c", 1}, []any{"a", []byte("v"), []string{"u", "t"}}), ErrCorrupt},
		{"entry without tags", snapshotOf(t, hdr(1), []any{"c", 1}, []any{"a", []byte("v")}), ErrCorrupt},
		{"value not a raw", snapshotOf(t, hdr(1), []any{"c", 1}, []any{"a", 1, []string{}}), ErrCorrupt},
		{"trailing record", append(snapshotOf(t, hdr(0)), 0x90), ErrCorrupt},
		{"trailing partial record", append(snapshotOf(t, hdr(0)), 0x92), ErrCorrupt},
		// A length prefix of 4 GiB fails at the record bound, before any allocation.
		{"huge value", append(snapshotOf(t, hdr(1), []any{"c", 1}), 0x93, 0xa1, 'a', 0xdb, 0xff, 0xff, 0xff, 0xff), ErrCorrupt},
		{"value over the cap", snapshotOf(t, hdr(1), []any{"c", 1}, []any{"a", make([]byte, MaxReplicatedValueSize+1), []string{}}), ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newState(t)
			mustApply(t, s, writeCmd("kept", "k", "v", "t"))
			before := snapshotBytes(t, s)
			err := s.Restore(bytes.NewReader(tc.data), 9)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Restore = %v, want %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "storage: restore snapshot: ") {
				t.Fatalf("message %q", err)
			}
			if !bytes.Equal(before, snapshotBytes(t, s)) {
				t.Fatal("a failed Restore changed the state")
			}
		})
	}
}

// Every proper prefix of a snapshot is refused: the counts make truncation visible even
// at a record boundary.
func TestRestoreTruncated(t *testing.T) {
	a := newState(t)
	mustApply(t, a, writeCmd("c", "a", "value", "t1", "t2"))
	mustApply(t, a, writeCmd("c", "b", ""))
	mustApply(t, a, writeCmd("d", "a", strings.Repeat("x", 300), "t"))
	full := snapshotBytes(t, a)
	s := newState(t)
	for n := range len(full) {
		if err := s.Restore(bytes.NewReader(full[:n]), 1); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Restore of %d of %d bytes = %v, want ErrCorrupt", n, len(full), err)
		}
	}
	if err := s.Restore(iotest.OneByteReader(bytes.NewReader(full)), 1); err != nil {
		t.Fatalf("Restore one byte at a time: %v", err)
	}
}

// A reader's own failure is passed on, not reported as corruption.
func TestRestoreReaderError(t *testing.T) {
	errDisk := errors.New("disk on fire")
	s := newState(t)
	full := snapshotBytes(t, s)
	r := io.MultiReader(bytes.NewReader(full[:2]), iotest.ErrReader(errDisk))
	err := s.Restore(r, 1)
	if !errors.Is(err, errDisk) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("Restore = %v, want the reader's error only", err)
	}
}

// A failing sink fails Persist.
func TestPersistWriterError(t *testing.T) {
	s := newState(t)
	mustApply(t, s, writeCmd("c", "k", strings.Repeat("v", 2*snapshotChunk), "t"))
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	errDisk := errors.New("disk full")
	for _, n := range []int{0, 10, snapshotChunk + 10} {
		if err := snap.Persist(&failingWriter{n: n, err: errDisk}); !errors.Is(err, errDisk) {
			t.Fatalf("Persist to a writer failing after %d bytes = %v", n, err)
		}
	}
}

// failingWriter accepts n bytes, then fails with err.
type failingWriter struct {
	n   int
	err error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, w.err
	}
	w.n -= len(p)
	return len(p), nil
}

// Persist runs while Apply goes on, as the raft layer runs it; run with -race.
func TestSnapshotPersistDuringApply(t *testing.T) {
	s := newState(t)
	cmds := randomCommands(rand.New(rand.NewPCG(7, 8)), 400)
	for i, cmd := range cmds[:200] {
		s.Apply(uint64(i+1), cmd)
	}
	want := snapshotBytes(t, s)
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := snap.Persist(&buf); err != nil {
			t.Error(err)
		}
	})
	for i, cmd := range cmds[200:] {
		s.Apply(uint64(201+i), cmd)
		s.find("c0", []string{"t1"})
	}
	wg.Wait()
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatal("the snapshot saw changes made after it was taken")
	}
}
