package unicorn

import (
	"bytes"
	"strings"
	"testing"
)

// fuzzStore returns a store with a little of everything: nodes, an ephemeral node, a
// lease, history.
func fuzzStore(t testing.TB) *applier {
	a := newApplier(t, Config{HistorySize: 64})
	a.mustCreate("/a/b", "x")
	a.mustCreate("/n", 1)
	id := a.grant(5)
	if _, err := a.create("/e", 1, CreateOptions{Lease: id}); err != nil {
		t.Fatal(err)
	}
	a.create("/q/s", 1, CreateOptions{Sequence: true})
	return a
}

// commandSeeds are well-formed commands of every kind, for the corpus.
func commandSeeds(t testing.TB) [][]byte {
	return [][]byte{
		encodePut("/a/b", mp(t, "y"), 0),
		encodePut("/n", mp(t, 2), 7),
		encodeCreate("/new/deep/node", mp(t, map[string]any{"k": []any{1, "v"}}), CreateOptions{}),
		encodeCreate("/q/s", mp(t, nil), CreateOptions{Sequence: true, Lease: 1}),
		encodeRemove("/a/b", -1),
		encodeRemove("/a", -1),
		encodeIncrement("/n", mp(t, 1.5)),
		encodeIncrement("/fresh", mp(t, -3)),
		encodeGrant(10),
		encodeRevoke(1, 2, 3),
		encodeTxn(Txn{
			If: []Compare{
				{Path: "/a/b", Target: CompareValue, Op: Equal, Value: mp(t, "x")},
				{Path: "/n", Target: CompareModRevision, Op: Greater, Number: 0},
				{Path: "/zz", Target: CompareExists, Op: NotEqual, Exists: true},
			},
			Then: []Op{{Kind: OpPut, Path: "/n", Value: mp(t, 5), Version: -1}, {Kind: OpGet, Path: "/a/b"}},
			Else: []Op{{Kind: OpRemove, Path: "/e", Version: 0}, {Kind: OpCreate, Path: "/t", Value: mp(t, 1), Create: CreateOptions{Lease: 1}}},
		}),
	}
}

// FuzzCommand feeds arbitrary bytes to Apply: it must never panic, and a command it
// rejects must change nothing.
func FuzzCommand(f *testing.F) {
	for _, s := range commandSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cmd []byte) {
		a := fuzzStore(t)
		before := snapshotBytes(t, a.s)
		res := a.apply(cmd)
		_, _, err := decodeResult(res)
		if err != nil && strings.Contains(err.Error(), "panicked") {
			t.Fatalf("Apply panicked: %v", err)
		}
		after := snapshotBytes(t, a.s)
		if err != nil && !bytes.Equal(before, after) {
			t.Fatalf("a rejected command (%v) changed the state", err)
		}
		if _, derr := decodeCommand(cmd); derr != nil && err == nil {
			t.Fatalf("Apply accepted a command the decoder rejects: %v", derr)
		}
		// whatever happened, the state still snapshots and restores to itself
		b := newApplier(t, Config{HistorySize: 64})
		if err := b.s.Restore(bytes.NewReader(after), 1); err != nil {
			t.Fatalf("the state after Apply does not restore: %v", err)
		}
		if !bytes.Equal(snapshotBytes(t, b.s), after) {
			t.Fatal("snapshot of the restored state differs")
		}
	})
}

// FuzzRestore feeds arbitrary bytes to Restore: it must never panic; a rejected
// snapshot leaves the state alone; an accepted one snapshots to bytes that restore to
// the same state (the first snapshot normalizes encodings and trims the history).
func FuzzRestore(f *testing.F) {
	a := fuzzStore(f)
	f.Add(snapshotBytes(f, a.s))
	f.Add(snapshotBytes(f, newApplier(f, Config{}).s))
	for _, cmd := range randomCommands(f, 11, 100) {
		a.apply(cmd)
	}
	f.Add(snapshotBytes(f, a.s))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := fuzzStore(t)
		before := snapshotBytes(t, s.s)
		if err := s.s.Restore(bytes.NewReader(data), 42); err != nil {
			if after := snapshotBytes(t, s.s); !bytes.Equal(before, after) {
				t.Fatalf("a rejected snapshot (%v) changed the state", err)
			}
			return
		}
		got := snapshotBytes(t, s.s)
		again := newApplier(t, Config{HistorySize: 64})
		if err := again.s.Restore(bytes.NewReader(got), 42); err != nil {
			t.Fatalf("the snapshot of an accepted snapshot does not restore: %v", err)
		}
		if !bytes.Equal(snapshotBytes(t, again.s), got) {
			t.Fatal("snapshot -> restore -> snapshot is not the identity")
		}
		// and the restored store still applies commands without panicking
		for _, cmd := range commandSeeds(t) {
			s.apply(cmd)
		}
	})
}
