package unicorn

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/rpc/rpctest"
)

// These tests serve the unicorn service over real TCP on 127.0.0.1 and talk to it with
// rpc clients speaking Graph, as the original clients do.

type fixture struct {
	t   *testing.T
	c   *cluster
	h   *host
	ep  rpc.Endpoint
	ctx context.Context
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	leakCheck(t)
	c := newCluster(t, cfg)
	h, _ := c.addHost(t, cfg)
	// The service takes up its leadership in Run: until then keepalives are refused, as a
	// real leader's are for a moment after an election.
	eventually(t, 10*time.Second, func() error {
		if !h.svc.leader.isLeading() {
			return errors.New("the service has not started leading")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return &fixture{t: t, c: c, h: h, ep: rpctest.Serve(t, h.svc.Dispatcher(), rpc.SessionConfig{}), ctx: ctx}
}

func (f *fixture) dial() *rpc.Conn {
	f.t.Helper()
	conn, err := rpc.Dial(f.ctx, []rpc.Endpoint{f.ep}, Graph, rpc.DialConfig{})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { conn.Close() })
	return conn
}

// call makes a one-shot call and returns the decoded args of its value, or its error.
func call(ctx context.Context, t testing.TB, conn *rpc.Conn, method string, a ...any) ([]any, error) {
	t.Helper()
	ch, err := conn.Call(ctx, method, a...)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	raw, err := ch.Get(ctx)
	if err != nil {
		return nil, err
	}
	v, err := rpc.Unmarshal(raw)
	if err != nil {
		t.Fatalf("%s reply: %v", method, err)
	}
	return v.([]any), nil
}

func (f *fixture) must(conn *rpc.Conn, method string, a ...any) []any {
	f.t.Helper()
	v, err := call(f.ctx, f.t, conn, method, a...)
	if err != nil {
		f.t.Fatalf("%s%v: %v", method, a, err)
	}
	return v
}

func list(v ...any) []any { return v }

// leakCheck fails t if it ends with more goroutines than it started with. Call it first,
// so that its cleanup runs after every other one (the server's, the service's).
func leakCheck(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		eventually(t, 5*time.Second, func() error {
			if n := runtime.NumGoroutine(); n > before {
				var b strings.Builder
				pprof.Lookup("goroutine").WriteTo(&b, 1)
				return fmt.Errorf("%d goroutines, %d before the test:\n%s", n, before, b.String())
			}
			return nil
		})
	})
}

// isCode reports whether err is the wire form of sentinel.
func isCode(err, sentinel error) bool { return errors.Is(err, WireCode(sentinel)) }

func TestGraphIDs(t *testing.T) {
	want := []string{"subscribe", "children_subscribe", "put", "get", "create", "del", "remove", "increment",
		"lock", "named_lock", "watch", "create_ex", "lease_grant", "lease_keepalive", "lease_revoke", "txn",
		"children", "revision"}
	for id, name := range want {
		m, ok := Graph.Method(uint64(id))
		if !ok || m.Name != name {
			t.Errorf("method %d = %q, want %q", id, m.Name, name)
		}
		if tr, ok := m.Dispatch.Lookup(0); !ok || tr.Name != "close" || !tr.Next.IsTerminal() || len(m.Dispatch.Transitions()) != 1 {
			t.Errorf("%s: dispatch is not {0: close -> {}}", name)
		}
	}
	// the wire codes of the table are unique and survive the trip
	seen := map[int]bool{}
	for _, c := range errorTable {
		if seen[c.Code] || c.Category != rpc.CategoryUnicorn {
			t.Errorf("code %d repeated or in category %d", c.Code, c.Category)
		}
		seen[c.Code] = true
		e := errorTable.Wire(fmt.Errorf("ctx: %w", c.Err))
		raw, _ := e.AppendMsgpack(nil)
		back := rpc.Message{Name: "error", Args: rpc.Args(raw)}.Err()
		if !errors.Is(back, WireCode(c.Err)) {
			t.Errorf("%v does not survive the wire: %v", c.Err, back)
		}
	}
}

func TestMethodsOverTCP(t *testing.T) {
	f := newFixture(t, Config{})
	conn := f.dial()
	for _, tc := range []struct {
		method string
		args   []any
		want   []any
		err    error
	}{
		{"get", list("/cfg/a"), list(list(nil, int64(-1))), nil},
		{"put", list("/cfg/a", "x", 0), nil, ErrNoNode},
		{"create", list("/cfg/a", "one"), list(true), nil},
		{"create", list("/cfg/a", "one"), nil, ErrNodeExists},
		{"create", list("/", 1), nil, ErrInvalidPath},
		{"get", list("/cfg/a"), list(list("one", uint64(0))), nil},
		{"get", list("/cfg"), nil, ErrChildNotAllowed},
		{"get", list("/cfg/a", "serializable"), list(list("one", uint64(0))), nil},
		{"get", list("/cfg/a", "linearizable"), list(list("one", uint64(0))), nil},
		{"get", list("/cfg/a", "sometimes"), nil, ErrInvalidNodeName},
		{"put", list("/cfg/a", "two", 0), list(true, list("two", uint64(1))), nil},
		{"put", list("/cfg/a", "three", 0), list(false, list("two", uint64(1))), nil},
		{"put", list("/cfg/a", "three", -1), nil, ErrVersionNotAllowed},
		{"increment", list("/n", 2), list(list(uint64(2), uint64(0))), nil},
		{"increment", list("/n", 1.5), list(list(3.5, uint64(1))), nil},
		{"increment", list("/n", "x"), nil, ErrInvalidType},
		{"increment", list("/cfg/a", 1), nil, ErrInvalidType},
		{"children", list("/cfg"), list(uint64(1), list("a")), nil},
		{"children", list("/none"), nil, ErrNoNode},
		{"del", list("/cfg", -1), nil, ErrBackend},
		{"remove", list("/cfg/a", 0), nil, ErrVersionNotAllowed},
		{"del", list("/cfg/a", 1), list(true), nil},
		{"remove", list("/cfg/a", -1), nil, ErrNoNode},
		{"remove", list("/cfg", -1), list(true), nil},
		{"create_ex", list("/q/job", 1, map[string]any{"sequence": true}), list("/q/job0000000000", uint64(7)), nil},
		{"create_ex", list("/q/job", 1, map[string]any{"sequence": true}), list("/q/job0000000001", uint64(8)), nil},
		{"create", list("/q/job", 1, false, true), list(true), nil},
		{"children", list("/q"), list(uint64(3), list("job0000000000", "job0000000001", "job0000000002")), nil},
		{"revision", nil, list(uint64(9), uint64(0)), nil},
		{"lease_keepalive", list(12345), nil, ErrLeaseNotFound},
		{"lease_revoke", list(12345), nil, ErrLeaseNotFound},
		{"create_ex", list("/e", 1, map[string]any{"lease": 12345}), nil, ErrLeaseNotFound},
		{"txn", list(
			list(list("/q/job0000000000", "version", "==", 0), list("/t", "exists", "==", false)),
			list(list("put", "/q/job0000000000", "new"), list("create", "/t", map[string]any{"k": "v"}), list("get", "/t")),
			list()),
			list(true, list(list("/q/job0000000000", "new", uint64(1)), list("/t", map[string]any{"k": "v"}, uint64(0)),
				list("/t", map[string]any{"k": "v"}, uint64(0))), uint64(10)), nil},
		{"txn", list(list(list("/t", "exists", "==", false)), list(), list(list("remove", "/t", 5))), nil, ErrVersionNotAllowed},
		{"txn", list(list(list("/t", "colour", "==", 1)), list(), list()), nil, ErrInvalidNodeName},
		{"txn", list(list(), list(list("rename", "/t")), list()), nil, ErrInvalidNodeName},
	} {
		t.Run(fmt.Sprintf("%s%v", tc.method, tc.args), func(t *testing.T) {
			got, err := call(f.ctx, t, conn, tc.method, tc.args...)
			if tc.err != nil {
				if !isCode(err, tc.err) {
					t.Fatalf("error %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestLeasesOverTCP(t *testing.T) {
	f := newFixture(t, Config{})
	conn := f.dial()
	r := f.must(conn, "lease_grant", 1) // below the minimum: raised to it
	id, ttl := r[0], r[1]
	if ttl != uint64(MinLeaseTTL/time.Second) {
		t.Fatalf("granted ttl %v", ttl)
	}
	if got := f.must(conn, "lease_keepalive", id); got[0] != ttl {
		t.Fatalf("keepalive = %v", got)
	}
	f.must(conn, "create_ex", "/svc/a", "ep", map[string]any{"lease": id})
	f.must(conn, "lease_revoke", id)
	if got := f.must(conn, "get", "/svc/a"); !reflect.DeepEqual(got, list(list(nil, int64(-1)))) {
		t.Fatalf("ephemeral node survived its lease: %v", got)
	}
	if _, err := call(f.ctx, t, conn, "lease_keepalive", id); !isCode(err, ErrLeaseNotFound) {
		t.Fatalf("keepalive of a revoked lease: %v", err)
	}
}

// recv reads the next chunk of a stream: its decoded args, or its error.
func recv(ctx context.Context, t testing.TB, ch *rpc.Channel) ([]any, error) {
	t.Helper()
	m, err := ch.Recv(ctx)
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	if err := m.Err(); err != nil {
		return nil, err
	}
	v, err := rpc.Unmarshal(m.Args)
	if err != nil {
		t.Fatal(err)
	}
	return v.([]any), nil
}

func mustRecv(ctx context.Context, t testing.TB, ch *rpc.Channel, want []any) {
	t.Helper()
	got, err := recv(ctx, t, ch)
	if err != nil {
		t.Fatalf("recv: %v, want %v", err, want)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("chunk %#v, want %#v", got, want)
	}
}

func TestSubscribeOverTCP(t *testing.T) {
	f := newFixture(t, Config{})
	conn := f.dial()
	sub, err := conn.Call(f.ctx, "subscribe", "/s")
	if err != nil {
		t.Fatal(err)
	}
	mustRecv(f.ctx, t, sub, list(list(nil, int64(-1))))
	f.must(conn, "create", "/s", "v0")
	mustRecv(f.ctx, t, sub, list(list("v0", uint64(0))))
	f.must(conn, "put", "/s", "v1", 0)
	mustRecv(f.ctx, t, sub, list(list("v1", uint64(1))))
	f.must(conn, "remove", "/s", -1)
	if _, err := recv(f.ctx, t, sub); !isCode(err, ErrNoNode) {
		t.Fatalf("after remove: %v", err)
	}

	chs, err := conn.Call(f.ctx, "children_subscribe", "/dir")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := recv(f.ctx, t, chs); !isCode(err, ErrNoNode) {
		t.Fatalf("children_subscribe of a missing node: %v", err)
	}
	f.must(conn, "create", "/dir/b", 1)
	chs, _ = conn.Call(f.ctx, "children_subscribe", "/dir")
	mustRecv(f.ctx, t, chs, list(uint64(1), list("b")))
	f.must(conn, "create", "/dir/a", 1)
	mustRecv(f.ctx, t, chs, list(uint64(2), list("a", "b")))
	f.must(conn, "put", "/dir/a", 2, 0) // a child's value change is not a children change
	f.must(conn, "remove", "/dir/b", -1)
	mustRecv(f.ctx, t, chs, list(uint64(3), list("a")))
	chs.SendName("close") // close ends the scope: nothing more arrives, not even an error
	f.must(conn, "remove", "/dir/a", -1)
	f.must(conn, "remove", "/dir", -1)
	ctx, cancel := context.WithTimeout(f.ctx, 50*time.Millisecond)
	defer cancel()
	if m, err := chs.Recv(ctx); err == nil {
		t.Fatalf("a closed subscription sent %v", m)
	}
}

func TestWatchOverTCP(t *testing.T) {
	f := newFixture(t, Config{HistorySize: 8})
	conn := f.dial()
	w, _ := conn.Call(f.ctx, "watch", "/w", -1, true)
	mustRecv(f.ctx, t, w, list(uint64(0), "sync", "/w", nil, int64(-1)))
	f.must(conn, "create", "/w/x", "a") // rev 1: /w, /w/x
	f.must(conn, "put", "/w/x", "b", 0) // rev 2
	f.must(conn, "create", "/other", 1) // rev 3: not watched
	f.must(conn, "remove", "/w/x", -1)  // rev 4
	mustRecv(f.ctx, t, w, list(uint64(1), "create", "/w", nil, uint64(0)))
	mustRecv(f.ctx, t, w, list(uint64(1), "create", "/w/x", "a", uint64(0)))
	mustRecv(f.ctx, t, w, list(uint64(2), "put", "/w/x", "b", uint64(1)))
	mustRecv(f.ctx, t, w, list(uint64(4), "delete", "/w/x", nil, int64(-1)))

	// resume from a revision: exact (non-recursive) watch of /w/x from 1
	r, _ := conn.Call(f.ctx, "watch", "/w/x", 1)
	mustRecv(f.ctx, t, r, list(uint64(1), "sync", "/w/x", nil, int64(-1)))
	mustRecv(f.ctx, t, r, list(uint64(2), "put", "/w/x", "b", uint64(1)))
	mustRecv(f.ctx, t, r, list(uint64(4), "delete", "/w/x", nil, int64(-1)))

	for i := 0; i < 10; i++ {
		f.must(conn, "increment", "/count", 1)
	}
	got := f.must(conn, "revision")
	old, _ := conn.Call(f.ctx, "watch", "/w/x", 1)
	_, err := recv(f.ctx, t, old)
	if !isCode(err, ErrCompacted) {
		t.Fatalf("watch from a compacted revision: %v", err)
	}
	want := fmt.Sprintf("compacted, current revision is %d, oldest available is %d", got[0], got[1])
	if e := (*rpc.Error)(nil); !errors.As(err, &e) || !strings.Contains(e.Message, want) {
		t.Fatalf("message %v, want it to say %q", err, want)
	}
}

func TestEphemeralVanishOnDisconnect(t *testing.T) {
	f := newFixture(t, Config{})
	a, b := f.dial(), f.dial()
	f.must(a, "create", "/eph/a", "x", true)
	f.must(a, "create_ex", "/eph/b", "y", map[string]any{"ephemeral": true})
	f.must(b, "create", "/eph/c", "z", true)
	w, _ := b.Call(f.ctx, "children_subscribe", "/eph")
	mustRecv(f.ctx, t, w, list(uint64(3), list("a", "b", "c")))
	a.Close()
	mustRecv(f.ctx, t, w, list(uint64(5), list("c")))
	if l := f.c.store.Leases(); len(l) != 2 { // b's session lease and the host lease
		t.Fatalf("leases after a disconnect: %+v", l)
	}
}

func TestLockOverTCP(t *testing.T) {
	f := newFixture(t, Config{})
	a, b := f.dial(), f.dial()
	la, _ := a.Call(f.ctx, "lock", "/locks/l")
	mustRecv(f.ctx, t, la, list(true))
	lb, _ := b.Call(f.ctx, "named_lock", "/locks/l", "b")
	eventually(t, 5*time.Second, func() error {
		if _, names, _, _ := f.c.store.Children("/locks/l"); len(names) != 2 {
			return fmt.Errorf("lock folder %v", names)
		}
		return nil
	})
	if _, names, _, _ := f.c.store.Children("/locks/l"); names[0] != "lock0000000000" || names[1] != "lock0000000001" {
		t.Fatalf("lock nodes %v", names)
	}
	a.Close() // disconnect releases a's lock
	mustRecv(f.ctx, t, lb, list(true))
	if v, _, _, _ := f.c.store.Get("/locks/l/lock0000000001"); string(v) != "\xa1b" {
		t.Fatalf("named lock value %q", v)
	}
	lb.SendName("close") // close releases it too
	eventually(t, 5*time.Second, func() error {
		if _, names, _, _ := f.c.store.Children("/locks/l"); len(names) != 0 {
			return fmt.Errorf("lock folder %v", names)
		}
		return nil
	})
	// a lock folder with trash in it
	f.must(b, "create", "/locks/t/aaa", 1) // sorts before lock0000000000, and is no lock node
	lt, _ := b.Call(f.ctx, "lock", "/locks/t")
	if _, err := recv(f.ctx, t, lt); !isCode(err, ErrBackend) {
		t.Fatalf("lock over trash: %v", err)
	}
}

func TestProtocolViolations(t *testing.T) {
	f := newFixture(t, Config{})
	for _, tc := range []struct {
		method string
		args   []any
	}{
		{"put", list(1, "x", 0)},                                   // path not a string
		{"put", list("/a", "x")},                                   // missing version
		{"get", list("/a", nil)},                                   // nil for an optional argument
		{"create", list("/a", map[any]any{uint64(1): "x"}, false)}, // not a dynamic value
		{"watch", list("/a", "zero")},
		{"txn", list(list(list("/a")), list(), list())},
	} {
		t.Run(tc.method, func(t *testing.T) {
			conn := f.dial()
			ch, err := conn.Call(f.ctx, tc.method, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ch.Recv(f.ctx); !errors.Is(err, rpc.ErrNotConnected) {
				t.Fatalf("recv = %v, want the connection closed", err)
			}
		})
	}
	// an oversized value is an error reply, not a violation
	small := newFixture(t, Config{MaxValueSize: 8})
	conn, err := rpc.Dial(small.ctx, []rpc.Endpoint{small.ep}, Graph, rpc.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = call(small.ctx, t, conn, "create", "/big", "0123456789")
	if !isCode(err, ErrInvalidValue) || !strings.Contains(err.Error(), "value of 11 bytes exceeds the limit of 8 bytes") {
		t.Fatalf("oversized value: %v", err)
	}
}
