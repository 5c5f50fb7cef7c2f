package storage

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// fuzzState returns a state holding a little of everything, so that commands and
// restores have something to replace, keep or break.
func fuzzState(t testing.TB) *ReplicatedState {
	t.Helper()
	s := newState(t)
	mustApply(t, s, writeCmd("c", "k", "v", "a", "b"))
	mustApply(t, s, writeCmd("c", "l", "", "b"))
	mustApply(t, s, writeCmd("d", "k", "w"))
	mustApply(t, s, blobCmd("d", "b", "blob", []holder{testHolder("h1", 1)}, "a"))
	return s
}

// commandSeeds are commands worth starting from: valid ones of each kind, and the near
// misses the decoder must refuse.
func commandSeeds(f testing.TB) [][]byte {
	return [][]byte{
		writeCmd("c", "k", "new", "a"),
		writeCmd("c", "k", "v2", "b", "c"),
		writeCmd("e", "x", "", "t"),
		writeCmd("c", "m", "v"),
		appendRemoveCommand(nil, "c", "k"),
		appendRemoveCommand(nil, "c", "missing"),
		appendRemoveCommand(nil, "d", "k"),
		appendWriteCommand(nil, string(allBytesButNUL()), "\xff", allBytes(), []string{"\x01", "\xff"}),
		{0x96, 0x03, 0x01, 0xa1, 'c', 0xa1, 'k', 0xa1, 'v', 0x90},                       // version 3
		{0x96, 0x01, 0x01, 0xa1, 'c', 0xa1, 'k', 0xa1, 'v', 0x92, 0xa1, 'b', 0xa1, 'a'}, // unsorted tags
		{0x94, 0x01, 0x02, 0xa1, 'c', 0xa0},                                             // empty key
		{0x94, 0x01, 0x03, 0xa1, 'c', 0xa1, 'k'},                                        // unknown operation
		{0x96, 0x01, 0x01, 0xa1, 'c', 0xa1, 'k', 0xdb, 0xff, 0xff, 0xff, 0xff},          // huge value
		blobCmd("c", "k", "blob", []holder{testHolder("h2", 2)}, "a"),
		blobCmd("c", "n", "other blob", []holder{testHolder("h1", 1), testHolder("h2", 2)}),
		blobCmd("c", "k", "blob!", []holder{testHolder("h1", 1)}),
		appendHoldCommand(nil, testHolder("h3", 3), []Digest{DigestOf([]byte("blob"))}),
		appendHoldCommand(nil, testHolder("h1", 7), sortedDigests("blob", "x")),
		// The digest of the state's "blob", with another size.
		appendWriteBlobCommand(nil, "c", "k", blobRef{digest: DigestOf([]byte("blob")), size: 5}, []holder{testHolder("h1", 1)}, nil),
		encode(f, 1, opWriteBlob, "c", "k", make([]byte, 32), 1, []any{[]any{"h", []any{[]any{"127.0.0.1", 1}}}}, []string{}), // version 1
	}
}

// sortedDigests returns the digests of values, sorted, as a hold lists them.
func sortedDigests(values ...string) []Digest {
	var ds []Digest
	for _, v := range values {
		ds = append(ds, DigestOf([]byte(v)))
	}
	slices.SortFunc(ds, func(a, b Digest) int { return bytes.Compare(a[:], b[:]) })
	return ds
}

// FuzzReplicatedCommand feeds arbitrary commands to Apply. Whatever the input: Apply does
// not panic, its result decodes, it agrees with decodeCommand, a rejected command leaves
// the state byte for byte as it was, an applied one does what it says and keeps the
// invariants, and two states that apply it stay identical.
func FuzzReplicatedCommand(f *testing.F) {
	for _, seed := range commandSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, cmd []byte) {
		s, twin := fuzzState(t), fuzzState(t)
		before := snapshotBytes(t, s)
		c, decoded := decodeCommand(cmd)
		// The one command that decodes and is still refused: a blob the state has with
		// another size.
		conflict := false
		if decoded == nil && c.op == opWriteBlob {
			info, ok := s.blobs[c.blob.digest]
			conflict = ok && info.size != c.blob.size
		}
		result := s.Apply(4, cmd)
		applied := decodeResult(result)
		if (applied == nil) != (decoded == nil && !conflict) {
			t.Fatalf("Apply says %v, decodeCommand says %v (size conflict: %v)", applied, decoded, conflict)
		}
		if !bytes.Equal(twin.Apply(4, cmd), result) {
			t.Fatal("two states gave different results")
		}
		after := snapshotBytes(t, s)
		if !bytes.Equal(after, snapshotBytes(t, twin)) {
			t.Fatal("two states that applied the same command differ")
		}
		if applied != nil {
			if !bytes.Equal(before, after) {
				t.Fatalf("rejected command (%v) changed the state", applied)
			}
			return
		}
		if err := checkState(s); err != nil {
			t.Fatal(err)
		}
		v, ok := readValue(s, c.collection, c.key)
		switch c.op {
		case opWrite:
			if !ok || !bytes.Equal(v, c.value) {
				t.Fatalf("after a write, read %q, %v; want %q", v, ok, c.value)
			}
			if len(c.tags) > 0 && !slices.Contains(s.find(c.collection, c.tags), c.key) {
				t.Fatalf("after a write, find %q misses %q", c.tags, c.key)
			}
			// The canonical encoding decodes to the same command.
			again, err := decodeCommand(appendWriteCommand(nil, c.collection, c.key, c.value, c.tags))
			if err != nil || again.collection != c.collection || again.key != c.key ||
				!bytes.Equal(again.value, c.value) || !slices.Equal(again.tags, c.tags) {
				t.Fatalf("re-encoded command decodes to %+v, %v", again, err)
			}
		case opWriteBlob:
			_, ref, holders, ok := s.read(c.collection, c.key)
			if !ok || ref == nil || *ref != c.blob {
				t.Fatalf("after a write blob, read %+v, %v; want %+v", ref, ok, c.blob)
			}
			for _, h := range c.holders {
				if !slices.ContainsFunc(holders, func(x holder) bool { return equalHolder(x, h) }) && len(holders) < MaxBlobHolders {
					t.Fatalf("after a write blob, holder %q is missing from %v", h.host, hosts(holders))
				}
			}
			again, err := decodeCommand(appendWriteBlobCommand(nil, c.collection, c.key, c.blob, c.holders, c.tags))
			if err != nil || again.blob != c.blob || !slices.EqualFunc(again.holders, c.holders, equalHolder) {
				t.Fatalf("re-encoded command decodes to %+v, %v", again, err)
			}
		case opRemove:
			if ok {
				t.Fatal("a removed key is still there")
			}
		case opHold:
			for _, st := range s.blobList() {
				if slices.Contains(c.digests, st.ref.digest) && len(st.holders) < MaxBlobHolders &&
					!slices.ContainsFunc(st.holders, func(x holder) bool { return equalHolder(x, c.holders[0]) }) {
					t.Fatalf("after a hold, %q does not hold %s", c.holders[0].host, st.ref.digest)
				}
			}
		}
	})
}

// snapshotSeeds are snapshots worth starting from.
func snapshotSeeds(t testing.TB) [][]byte {
	full := snapshotBytes(t, fuzzState(t))
	binary := newState(t)
	mustApply(t, binary, appendWriteCommand(nil, string(allBytesButNUL()), "\xff", allBytes(), []string{"\x01", "\xff"}))
	blobs := snapshotBytes(t, blobState(t))
	return [][]byte{
		full,
		blobs,
		blobs[:len(blobs)-3],
		[]byte(snapshotV1),
		snapshotBytes(t, newState(t)),
		snapshotBytes(t, binary),
		full[:len(full)-1],
		append(slices.Clone(full), 0x90),
	}
}

// FuzzReplicatedRestore feeds arbitrary streams to Restore. Whatever the input: Restore
// does not panic; a refused stream leaves the state byte for byte as it was and is
// reported as corruption (the reader never fails); an accepted one gives a state that
// keeps the invariants and whose own snapshot restores to the same bytes.
func FuzzReplicatedRestore(f *testing.F) {
	for _, seed := range snapshotSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := fuzzState(t)
		before := snapshotBytes(t, s)
		if err := s.Restore(bytes.NewReader(data), 9); err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("Restore = %v, want ErrCorrupt or ErrUnsupportedVersion", err)
			}
			if !bytes.Equal(before, snapshotBytes(t, s)) {
				t.Fatal("a refused snapshot changed the state")
			}
			return
		}
		if err := checkState(s); err != nil {
			t.Fatal(err)
		}
		snap := snapshotBytes(t, s)
		again := newState(t)
		if err := again.Restore(bytes.NewReader(snap), 9); err != nil {
			t.Fatalf("the state's own snapshot is refused: %v", err)
		}
		if !bytes.Equal(snap, snapshotBytes(t, again)) {
			t.Fatal("a snapshot does not restore to itself")
		}
	})
}
