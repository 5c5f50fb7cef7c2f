package unicorn

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/cocaine/cocaine/rpc"
)

// applier feeds commands to a Store with increasing raft indexes, as a raft node would.
type applier struct {
	t     testing.TB
	s     *Store
	index uint64
	cmds  [][]byte // every command applied, for replaying on another store
}

func newApplier(t testing.TB, cfg Config) *applier {
	t.Helper()
	s, err := NewStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &applier{t: t, s: s}
}

func (a *applier) apply(cmd []byte) []byte {
	a.index++
	a.cmds = append(a.cmds, cmd)
	return a.s.Apply(a.index, cmd)
}

func mp(t testing.TB, v any) []byte {
	t.Helper()
	b, err := rpc.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (a *applier) create(path string, v any, o CreateOptions) (string, error) {
	p, _, err := decodeCreateResult(a.apply(encodeCreate(path, mp(a.t, v), o)))
	return p, err
}

func (a *applier) mustCreate(path string, v any) {
	a.t.Helper()
	if _, err := a.create(path, v, CreateOptions{}); err != nil {
		a.t.Fatalf("create %s: %v", path, err)
	}
}

func (a *applier) put(path string, v any, version int64) (bool, any, int64, error) {
	ok, value, ver, err := decodePutResult(a.apply(encodePut(path, mp(a.t, v), version)))
	if err != nil {
		return false, nil, 0, err
	}
	x, err := rpc.Unmarshal(value)
	if err != nil {
		a.t.Fatal(err)
	}
	return ok, x, ver, nil
}

func (a *applier) remove(path string, version int64) error {
	_, err := decodeRemoveResult(a.apply(encodeRemove(path, version)))
	return err
}

func (a *applier) get(path string) (any, int64, error) {
	v, ver, _, err := a.s.Get(path)
	if err != nil {
		return nil, 0, err
	}
	x, err := rpc.Unmarshal(v)
	if err != nil {
		a.t.Fatal(err)
	}
	return x, ver, nil
}

func (a *applier) increment(path string, delta any) (any, int64, error) {
	v, ver, err := decodeIncrementResult(a.apply(encodeIncrement(path, mp(a.t, delta))))
	if err != nil {
		return nil, 0, err
	}
	x, _ := rpc.Unmarshal(v)
	return x, ver, nil
}

func (a *applier) grant(ttl int64) LeaseID {
	a.t.Helper()
	id, _, err := decodeGrantResult(a.apply(encodeGrant(ttl)))
	if err != nil {
		a.t.Fatal(err)
	}
	return id
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error %v", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
}

func TestValidatePath(t *testing.T) {
	long := "/" + string(bytes.Repeat([]byte("x"), MaxPathLength-1))
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"/a", true}, {"/a/b/c", true}, {"/a.b/..c/.d", true}, {long, true},
		{"", false}, {"/", false}, {"a", false}, {"a/b", false}, {"//a", false}, {"/a//b", false},
		{"/a/", false}, {"/a/.", false}, {"/./a", false}, {"/a/../b", false}, {"/..", false},
		{"/a\x00b", false}, {long + "x", false},
	} {
		t.Run(fmt.Sprintf("%.40q", tc.path), func(t *testing.T) {
			err := ValidatePath(tc.path)
			if tc.ok != (err == nil) {
				t.Fatalf("ValidatePath = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidPath) {
				t.Fatalf("%v does not wrap ErrInvalidPath", err)
			}
		})
	}
}

func TestPutGetSemantics(t *testing.T) {
	a := newApplier(t, Config{})
	// get of an absent node: [nil, -1], no error
	v, ver, err := a.get("/cfg")
	wantErr(t, err, nil)
	if v != nil || ver != -1 {
		t.Fatalf("absent get = [%v, %d], want [nil, -1]", v, ver)
	}
	// put never creates
	_, _, _, err = a.put("/cfg", "x", 0)
	wantErr(t, err, ErrNoNode)
	a.mustCreate("/cfg", "one")
	// negative versions are refused, -1 included
	_, _, _, err = a.put("/cfg", "x", -1)
	wantErr(t, err, ErrVersionNotAllowed)
	ok, cur, curVer, err := a.put("/cfg", "two", 0)
	wantErr(t, err, nil)
	if !ok || cur != "two" || curVer != 1 {
		t.Fatalf("put = [%v, [%v, %d]], want [true, [two, 1]]", ok, cur, curVer)
	}
	// a mismatch is not an error: [false, [current value, current version]]
	ok, cur, curVer, err = a.put("/cfg", "three", 0)
	wantErr(t, err, nil)
	if ok || cur != "two" || curVer != 1 {
		t.Fatalf("stale put = [%v, [%v, %d]], want [false, [two, 1]]", ok, cur, curVer)
	}
	v, ver, _ = a.get("/cfg")
	if v != "two" || ver != 1 {
		t.Fatalf("get = [%v, %d]", v, ver)
	}
	// a node with children refuses value reads
	a.mustCreate("/cfg/child", 1)
	_, _, err = a.get("/cfg")
	wantErr(t, err, ErrChildNotAllowed)
	// but put still works on it, as ZooKeeper's set does
	ok, _, _, err = a.put("/cfg", "four", 1)
	if err != nil || !ok {
		t.Fatalf("put on a parent: %v %v", ok, err)
	}
	// invalid paths
	_, _, err = a.get("/")
	wantErr(t, err, ErrInvalidPath)
	_, _, _, err = a.put("cfg", 1, 0)
	wantErr(t, err, ErrInvalidPath)
}

func TestCreateSemantics(t *testing.T) {
	a := newApplier(t, Config{})
	p, err := a.create("/a/b/c", map[string]any{"k": 1}, CreateOptions{})
	if err != nil || p != "/a/b/c" {
		t.Fatalf("create = %q, %v", p, err)
	}
	// QUIRK fixed: implicit parents hold msgpack nil, not an empty byte string
	n, ok := a.s.Node("/a/b")
	if !ok || !bytes.Equal(n.Value, []byte{0xc0}) || n.Version != 0 || n.CVersion != 1 || n.Children != 1 {
		t.Fatalf("implicit parent = %+v", n)
	}
	_, err = a.create("/a/b/c", 1, CreateOptions{})
	wantErr(t, err, ErrNodeExists)
	_, err = a.create("/", 1, CreateOptions{})
	wantErr(t, err, ErrInvalidPath)
	// a command whose value is not one msgpack object does not decode, and changes nothing
	rev := a.s.Revision()
	res := a.apply(encodeCreate("/bad", []byte{0x92, 0x01}, CreateOptions{}))
	_, _, err = decodeCreateResult(res)
	wantErr(t, err, ErrBackend)
	if a.s.Revision() != rev {
		t.Fatal("a failed create changed the revision")
	}
	// one revision for the node and its implicit parents
	_, created, _ := decodeCreateResult(a.apply(encodeCreate("/x/y/z", mp(t, 1), CreateOptions{})))
	if created != rev+1 {
		t.Fatalf("create revision %d, want %d", created, rev+1)
	}
	for _, p := range []string{"/x", "/x/y", "/x/y/z"} {
		if n, _ := a.s.Node(p); n.CreateRevision != created {
			t.Fatalf("%s created at %d, want %d", p, n.CreateRevision, created)
		}
	}
}

func TestSequenceNames(t *testing.T) {
	a := newApplier(t, Config{})
	for i, want := range []string{"/q/item0000000000", "/q/item0000000001", "/q/item0000000002"} {
		p, err := a.create("/q/item", i, CreateOptions{Sequence: true})
		if err != nil || p != want {
			t.Fatalf("sequential create %d = %q, %v; want %q", i, p, err, want)
		}
	}
	// the counter is per parent and does not go back when children go away
	wantErr(t, a.remove("/q/item0000000002", -1), nil)
	if p, _ := a.create("/q/item", 9, CreateOptions{Sequence: true}); p != "/q/item0000000003" {
		t.Fatalf("after a remove: %q", p)
	}
	if p, _ := a.create("/other/x", 0, CreateOptions{Sequence: true}); p != "/other/x0000000000" {
		t.Fatalf("another parent: %q", p)
	}
	if p, _ := a.create("/top", 0, CreateOptions{Sequence: true}); p != "/top0000000000" {
		t.Fatalf("top level: %q", p)
	}
}

func TestRemoveSemantics(t *testing.T) {
	a := newApplier(t, Config{})
	wantErr(t, a.remove("/n", -1), ErrNoNode)
	a.mustCreate("/n", 1)
	a.put("/n", 2, 0)
	wantErr(t, a.remove("/n", 0), ErrVersionNotAllowed)
	wantErr(t, a.remove("/n", -2), ErrVersionNotAllowed)
	wantErr(t, a.remove("/n", 1), nil)
	a.mustCreate("/p/c", 1)
	err := a.remove("/p", -1)
	wantErr(t, err, ErrBackend)
	wantErr(t, a.remove("/p/c", -1), nil)
	wantErr(t, a.remove("/p", -1), nil) // -1 is any version
	if _, ok := a.s.Node("/p"); ok {
		t.Fatal("/p still exists")
	}
}

func TestIncrementSemantics(t *testing.T) {
	a := newApplier(t, Config{})
	for _, tc := range []struct {
		name    string
		path    string
		delta   any
		want    any
		version int64
		err     error
	}{
		{"absent creates with delta", "/i", int64(5), uint64(5), 0, nil},
		{"int plus int", "/i", int64(-7), int64(-2), 1, nil},
		{"int plus uint", "/i", uint64(10), uint64(8), 2, nil},
		{"int plus double", "/i", 0.5, 8.5, 3, nil},
		{"double plus int", "/i", int64(1), 9.5, 4, nil},
		{"absent double", "/f", 1.25, 1.25, 0, nil},
		{"non-numeric delta", "/i", "x", nil, 0, ErrInvalidType},
		{"overflow", "/big", int64(1), nil, 0, ErrInvalidType},
		{"uint beyond int64", "/i", uint64(1 << 63), nil, 0, ErrInvalidType},
		{"non-numeric value", "/s", int64(1), nil, 0, ErrInvalidType},
		{"node with children", "/dir", int64(1), nil, 0, ErrChildNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			switch tc.path {
			case "/s":
				a.mustCreate("/s", "str")
			case "/dir":
				a.mustCreate("/dir/x", 1)
			case "/big":
				a.mustCreate("/big", int64(1<<63-1))
			}
			v, ver, err := a.increment(tc.path, tc.delta)
			wantErr(t, err, tc.err)
			if tc.err == nil && (v != tc.want || ver != tc.version) {
				t.Fatalf("increment = [%v (%T), %d], want [%v (%T), %d]", v, v, ver, tc.want, tc.want, tc.version)
			}
		})
	}
}

func TestTxn(t *testing.T) {
	a := newApplier(t, Config{})
	a.mustCreate("/t/a", "A")
	txn := func(tx Txn) (TxnResult, error) { return decodeTxnResultBytes(a.apply(encodeTxn(tx))) }
	put := func(p string, v any) Op { return Op{Kind: OpPut, Path: p, Value: mp(t, v), Version: -1} }
	create := func(p string, v any) Op { return Op{Kind: OpCreate, Path: p, Value: mp(t, v)} }

	r, err := txn(Txn{
		If:   []Compare{{Path: "/t/a", Target: CompareValue, Op: Equal, Value: mp(t, "A")}, {Path: "/t/b", Target: CompareExists, Op: Equal}},
		Then: []Op{put("/t/a", "A2"), create("/t/b", "B"), {Kind: OpGet, Path: "/t/a"}, {Kind: OpGet, Path: "/t/none"}},
		Else: []Op{{Kind: OpGet, Path: "/t/a"}},
	})
	if err != nil || !r.Succeeded || len(r.Results) != 4 {
		t.Fatalf("txn = %+v, %v", r, err)
	}
	if r.Results[1].Path != "/t/b" || r.Results[2].Version != 1 || r.Results[3].Version != -1 {
		t.Fatalf("results = %+v", r.Results)
	}
	na, _ := a.s.Node("/t/a")
	nb, _ := a.s.Node("/t/b")
	if na.ModRevision != r.Revision || nb.CreateRevision != r.Revision || a.s.Revision() != r.Revision {
		t.Fatalf("one revision for the whole txn: %d %d %d", na.ModRevision, nb.CreateRevision, r.Revision)
	}
	// the else branch
	r, err = txn(Txn{
		If:   []Compare{{Path: "/t/a", Target: CompareVersion, Op: Greater, Number: 5}},
		Then: []Op{put("/t/a", "never")},
		Else: []Op{{Kind: OpGet, Path: "/t/a"}},
	})
	if err != nil || r.Succeeded || len(r.Results) != 1 || r.Results[0].Version != 1 {
		t.Fatalf("else txn = %+v, %v", r, err)
	}
	// mod_revision compare: a CAS on the revision
	r, _ = txn(Txn{If: []Compare{{Path: "/t/a", Target: CompareModRevision, Op: Equal, Number: int64(na.ModRevision)}}, Then: []Op{put("/t/a", "A3")}})
	if !r.Succeeded {
		t.Fatal("mod_revision compare failed")
	}
	// a failing operation fails the whole txn and changes nothing
	rev := a.s.Revision()
	_, err = txn(Txn{Then: []Op{put("/t/a", "lost"), create("/t/b", "again")}})
	wantErr(t, err, ErrNodeExists)
	if v, _, _ := a.get("/t/a"); v != "A3" || a.s.Revision() != rev {
		t.Fatalf("failed txn left /t/a = %v, revision %d (was %d)", v, a.s.Revision(), rev)
	}
	_, err = txn(Txn{Then: []Op{{Kind: OpRemove, Path: "/t/a", Version: 0}}})
	wantErr(t, err, ErrVersionNotAllowed)
	_, err = txn(Txn{If: []Compare{{Path: "/t/a", Target: CompareValue, Op: Less, Value: mp(t, 1)}}})
	wantErr(t, err, ErrInvalidNodeName)
	// a read-only txn changes no revision
	r, _ = txn(Txn{Then: []Op{{Kind: OpGet, Path: "/t/b"}}})
	if r.Revision != rev || a.s.Revision() != rev {
		t.Fatalf("read-only txn moved the revision to %d", a.s.Revision())
	}
}

func TestLeases(t *testing.T) {
	a := newApplier(t, Config{})
	l1, l2 := a.grant(10), a.grant(20)
	if l1 != 1 || l2 != 2 {
		t.Fatalf("lease ids %d, %d", l1, l2)
	}
	_, err := a.create("/e", 1, CreateOptions{Lease: 99})
	wantErr(t, err, ErrLeaseNotFound)
	for _, p := range []string{"/svc/a", "/svc/b", "/svc/c"} {
		if _, err := a.create(p, 1, CreateOptions{Ephemeral: true, Lease: l1}); err != nil {
			t.Fatal(err)
		}
	}
	a.create("/svc/d", 1, CreateOptions{Lease: l2})
	// ephemeral nodes have no children
	_, err = a.create("/svc/a/x", 1, CreateOptions{})
	wantErr(t, err, ErrBackend)
	// removing one detaches it
	wantErr(t, a.remove("/svc/c", -1), nil)
	w, _ := a.s.Watch("/svc", WatchChildren, -1)
	defer w.Close()
	rev, found, err := decodeRevokeResult(a.apply(encodeRevoke(l1, 77)))
	if err != nil || found != 1 {
		t.Fatalf("revoke = %d, %v", found, err)
	}
	evs, _ := w.Poll()
	if len(evs) != 2 || evs[0].Path != "/svc/a" || evs[1].Path != "/svc/b" || evs[0].Revision != rev || evs[1].Revision != rev {
		t.Fatalf("revoke events %+v at revision %d", evs, rev)
	}
	if _, ok := a.s.Lease(l1); ok {
		t.Fatal("lease still there")
	}
	if _, ok := a.s.Node("/svc/d"); !ok {
		t.Fatal("another lease's node went away")
	}
	if ls := a.s.Leases(); len(ls) != 1 || ls[0].ID != l2 || ls[0].Nodes != 1 {
		t.Fatalf("leases %+v", ls)
	}
}

func TestApplyRejectsGarbage(t *testing.T) {
	a := newApplier(t, Config{})
	a.mustCreate("/keep", 1)
	before := snapshotBytes(t, a.s)
	for _, cmd := range [][]byte{
		nil, {0xc1}, {0x90}, {0x92, 0x02, 0x01}, mp(t, []any{1, 99}), mp(t, []any{1, 1, "/keep"}),
		mp(t, []any{1, 2, "/x", 1, 4, 0}), mp(t, []any{1, 2, "/x", 1, 1, 0}), mp(t, []any{1, 6, 0}),
		append(encodePut("/keep", mp(t, 1), 0), 0x00),
	} {
		d, _, err := decodeResult(a.apply(cmd))
		if err == nil || d != nil {
			t.Errorf("command %x: no error", cmd)
		}
	}
	after := snapshotBytes(t, a.s)
	if !bytes.Equal(before, after) {
		t.Fatal("rejected commands changed the state")
	}
}

func snapshotBytes(t testing.TB, s *Store) []byte {
	t.Helper()
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var buf bytes.Buffer
	if err := snap.Persist(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
