package unicorn

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// randomCommands returns n commands of every kind over a small tree, the same for a
// seed. Many of them fail (missing nodes, stale versions): those matter too.
func randomCommands(t testing.TB, seed uint64, n int) [][]byte {
	r := rand.New(rand.NewPCG(seed, 1))
	paths := []string{"/a", "/a/b", "/a/b/c", "/d", "/d/e", "/f/g/h", "/q/item"}
	path := func() string { return paths[r.IntN(len(paths))] }
	val := func() []byte { return mp(t, map[string]any{"n": r.IntN(100), "s": fmt.Sprint(r.IntN(10))}) }
	var cmds [][]byte
	for range n {
		switch r.IntN(9) {
		case 0, 1:
			cmds = append(cmds, encodeCreate(path(), val(), CreateOptions{Sequence: r.IntN(4) == 0}))
		case 2:
			cmds = append(cmds, encodePut(path(), val(), int64(r.IntN(3))))
		case 3:
			cmds = append(cmds, encodeRemove(path(), int64(r.IntN(3)-1)))
		case 4:
			cmds = append(cmds, encodeIncrement(path(), mp(t, r.IntN(5))))
		case 5:
			cmds = append(cmds, encodeGrant(int64(2+r.IntN(10))))
		case 6:
			cmds = append(cmds, encodeCreate(fmt.Sprintf("/eph/%d", r.IntN(20)), val(), CreateOptions{Lease: LeaseID(1 + r.IntN(5))}))
		case 7:
			cmds = append(cmds, encodeRevoke(LeaseID(1+r.IntN(5)), LeaseID(1+r.IntN(5))))
		default:
			cmds = append(cmds, encodeTxn(Txn{
				If:   []Compare{{Path: path(), Target: CompareVersion, Op: Less, Number: int64(r.IntN(3))}},
				Then: []Op{{Kind: OpPut, Path: path(), Value: val(), Version: -1}, {Kind: OpGet, Path: path()}},
				Else: []Op{{Kind: OpCreate, Path: path(), Value: val()}},
			}))
		}
	}
	return cmds
}

func TestDeterminism(t *testing.T) {
	cmds := randomCommands(t, 7, 2000)
	a, b := newApplier(t, Config{HistorySize: 100}), newApplier(t, Config{HistorySize: 100})
	for i, cmd := range cmds {
		ra, rb := a.apply(cmd), b.apply(cmd)
		if !bytes.Equal(ra, rb) {
			t.Fatalf("command %d: results differ: %x vs %x", i, ra, rb)
		}
	}
	sa, sb := snapshotBytes(t, a.s), snapshotBytes(t, b.s)
	if !bytes.Equal(sa, sb) {
		t.Fatal("two stores fed the same commands have different snapshots")
	}
	if a.s.Revision() < 100 || len(a.s.Leases()) == 0 || a.s.Compacted() == 0 {
		t.Fatalf("the commands did too little: revision %d, %d leases, compacted %d", a.s.Revision(), len(a.s.Leases()), a.s.Compacted())
	}

	// snapshot -> restore -> snapshot is the identity, and the restored store goes on
	// exactly as the original
	c := newApplier(t, Config{HistorySize: 100})
	if err := c.s.Restore(bytes.NewReader(sa), uint64(len(cmds))); err != nil {
		t.Fatal(err)
	}
	if sc := snapshotBytes(t, c.s); !bytes.Equal(sa, sc) {
		t.Fatal("restore then snapshot changed the bytes")
	}
	for i, cmd := range randomCommands(t, 8, 500) {
		if ra, rc := a.apply(cmd), c.apply(cmd); !bytes.Equal(ra, rc) {
			t.Fatalf("after restore, command %d: results differ", i)
		}
	}
	if !bytes.Equal(snapshotBytes(t, a.s), snapshotBytes(t, c.s)) {
		t.Fatal("the restored store diverged")
	}
}

func TestSnapshotPersistsWhileApplying(t *testing.T) {
	a := newApplier(t, Config{})
	for _, cmd := range randomCommands(t, 3, 300) {
		a.apply(cmd)
	}
	want := snapshotBytes(t, a.s)
	snap, _ := a.s.Snapshot()
	defer snap.Release()
	for _, cmd := range randomCommands(t, 4, 300) { // later Applies do not leak into snap
		a.apply(cmd)
	}
	var buf bytes.Buffer
	if err := snap.Persist(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatal("a snapshot changed after it was taken")
	}
}

func TestRestoreRejectsMalformed(t *testing.T) {
	src := newApplier(t, Config{})
	for _, cmd := range randomCommands(t, 5, 200) {
		src.apply(cmd)
	}
	good := snapshotBytes(t, src.s)
	dst := newApplier(t, Config{})
	dst.mustCreate("/mine", 1)
	before := snapshotBytes(t, dst.s)
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x40
	for name, data := range map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)-3],
		"flipped":   flipped,
		"trailing":  append(bytes.Clone(good), 0x00),
		"garbage":   []byte("not a snapshot at all"),
		"command":   encodeCreate("/x", []byte{1}, CreateOptions{}),
	} {
		t.Run(name, func(t *testing.T) {
			err := dst.s.Restore(bytes.NewReader(data), 99)
			if !errors.Is(err, ErrBackend) {
				t.Fatalf("Restore = %v, want a malformed-snapshot error", err)
			}
			if after := snapshotBytes(t, dst.s); !bytes.Equal(before, after) {
				t.Fatal("a rejected restore changed the state")
			}
		})
	}
}

func TestRestoreTrimsHistory(t *testing.T) {
	src := newApplier(t, Config{HistorySize: 100})
	for i := range 50 {
		src.mustCreate(fmt.Sprintf("/h/%02d", i), i)
	}
	dst := newApplier(t, Config{HistorySize: 10})
	if err := dst.s.Restore(bytes.NewReader(snapshotBytes(t, src.s)), 1); err != nil {
		t.Fatal(err)
	}
	// 51 events (the first create also creates /h), revisions 1..50: keeping the last 10
	// drops revisions 1..40
	if dst.s.hist.len() != 10 || dst.s.Compacted() != 40 || dst.s.Revision() != 50 {
		t.Fatalf("history %d events, compacted %d, revision %d", dst.s.hist.len(), dst.s.Compacted(), dst.s.Revision())
	}
}
