package locator_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cocaine/cocaine/locator"
	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/rpc/rpctest"
	"github.com/cocaine/cocaine/services/storage"
)

// These tests serve locator.New over a real loopback server with a bolt storage backend as
// the GroupStore, and talk to it with rpc clients or raw connections.

// zeroTrace is the headers element of every reply on an untraced channel (protocol.md §4.2).
const zeroTrace = `93` +
	` 93 c2 a8 "trace_id" a8 00 00 00 00 00 00 00 00` +
	` 93 c2 a7 "span_id" a8 00 00 00 00 00 00 00 00` +
	` 93 c2 a9 "parent_id" a8 00 00 00 00 00 00 00 00`

// The reply graphs and the control entries of protocol.md §3.5, as bytes.
const (
	specP = `82 00 92 a5 "value" 80 01 92 a5 "error" 80`
	specS = `83 00 92 a5 "write" c0 01 92 a5 "error" 80 02 92 a5 "close" 80`
	specX = `cd fffc 92 a6 "goaway" 80 cd fffd 92 a4 "ping" 80 cd fffe 92 a8 "settings" 80 cd ffff 92 a6 "revoke" 80`
)

// specLocatorGraph is the locator's graph exactly as protocol.md §3.5 lists it.
var specLocatorGraph = strings.Join([]string{`8b`,
	`00 93 a7 "resolve" 80`, specP,
	`01 93 a7 "connect" 80`, specS,
	`02 93 a7 "refresh" 80`, specP,
	`03 93 a7 "cluster" 80`, specP,
	`04 93 a7 "publish" 85 00 92 a7 "discard" 80`, specX, specP,
	`05 93 a7 "routing" 85 00 92 a7 "discard" 80`, specX, specS,
	`06 93 a4 "uuid" 80`, specP,
	`cd fffc 93 a6 "goaway" 80`, specP,
	`cd fffd 93 a4 "ping" 80`, specP,
	`cd fffe 93 a8 "settings" 80`, specP,
	`cd ffff 93 a6 "revoke" 80`, specP,
}, " ")

// eventually polls cond until it returns nil, failing t after timeout.
func eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		<-tick.C
	}
}

// leakCheck fails t if it ends with more goroutines than it started with. Call it first,
// so that its cleanup runs after every other one.
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

func testCtx(t *testing.T) context.Context {
	// A bound for a broken server, so that a test fails instead of hanging.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type fixture struct {
	t     *testing.T
	ep    rpc.Endpoint
	reg   *locator.Registry
	svc   *locator.Service
	store *storage.Bolt
	stop  func() error // cancels Run and waits for it; idempotent
}

// newFixture serves a locator whose registry holds the locator itself, and runs it. It
// returns once Run's initial load of the routing groups is done, so that no stray dump
// reaches the routers a test attaches.
func newFixture(t *testing.T, cfg locator.Config) *fixture {
	t.Helper()
	leakCheck(t)
	store, err := storage.OpenBolt(filepath.Join(t.TempDir(), "storage.db"), storage.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	reg := locator.NewRegistry()
	svc, err := locator.New(cfg, reg, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, reg: reg, svc: svc, store: store}
	f.ep = rpctest.Serve(t, svc.Dispatcher(), rpc.SessionConfig{})
	mustExpose(t, reg, locator.Entry{Name: locator.Name, Endpoints: []rpc.Endpoint{f.ep}, Version: 3, Graph: rpc.LocatorGraph})

	// A group that only Run's initial load can bring in tells when that load is over.
	f.writeGroup("boot", map[string]any{"locator": 1}, locator.GroupTags...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	var runErr error
	f.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(10 * time.Second):
				runErr = errors.New("Run did not return after cancel")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := f.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	eventually(t, 5*time.Second, func() error {
		if !slices.Contains(svc.Groups(), "boot") {
			return errors.New("Run has not loaded the routing groups")
		}
		return nil
	})
	if err := store.Remove(testCtx(t), locator.GroupsCollection, "boot"); err != nil {
		t.Fatal(err)
	}
	if err := svc.Refresh(testCtx(t), nil); err != nil || len(svc.Groups()) != 0 {
		t.Fatalf("Refresh: %v, groups %v", err, svc.Groups())
	}
	return f
}

// writeGroup stores a routing group as cocaine-tool does.
func (f *fixture) writeGroup(name string, members map[string]any, tags ...string) {
	f.t.Helper()
	blob, err := rpc.Marshal(members)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.store.Write(testCtx(f.t), locator.GroupsCollection, name, blob, tags); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) dial(t *testing.T) *rpc.Conn {
	t.Helper()
	c, err := rpc.Dial(testCtx(t), []rpc.Endpoint{f.ep}, rpc.LocatorGraph, rpc.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// call sends a primitive request and returns the value's args or the error reply.
func call(t *testing.T, c *rpc.Conn, method string, args ...any) (rpc.Args, error) {
	t.Helper()
	ctx := testCtx(t)
	ch, err := c.Call(ctx, method, args...)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return ch.Get(ctx)
}

// open starts a stream (connect, routing) or a publish channel.
func open(t *testing.T, c *rpc.Conn, method string, args ...any) *rpc.Channel {
	t.Helper()
	ch, err := c.Call(testCtx(t), method, args...)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return ch
}

func recv(t *testing.T, ch *rpc.Channel) rpc.Message {
	t.Helper()
	m, err := ch.Recv(testCtx(t))
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return m
}

// expectWrite reads a write and compares its args with want.
func expectWrite(t *testing.T, ch *rpc.Channel, want []byte) rpc.Message {
	t.Helper()
	m := recv(t, ch)
	if m.Name != "write" || !bytes.Equal(m.Args, want) {
		t.Fatalf("got %s % x\nwant write % x", m.Name, []byte(m.Args), want)
	}
	return m
}

// expectClose reads the close that ends a stream.
func expectClose(t *testing.T, ch *rpc.Channel) {
	t.Helper()
	if m := recv(t, ch); m.Name != "close" {
		t.Fatalf("got %s % x, want close", m.Name, []byte(m.Args))
	}
	if _, err := ch.Recv(testCtx(t)); !errors.Is(err, rpc.ErrChannelClosed) {
		t.Fatalf("after close: %v", err)
	}
}

// expectNothing checks that no message is queued on ch. Call it after a reply that the
// server sent later on the same connection: frames of one connection arrive in order.
func expectNothing(t *testing.T, ch *rpc.Channel) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if m, err := ch.Recv(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("unexpected %s % x (%v)", m.Name, []byte(m.Args), err)
	}
}

func expectUnavailable(t *testing.T, c *rpc.Conn, name string, seed ...any) {
	t.Helper()
	_, err := call(t, c, "resolve", append([]any{name}, seed...)...)
	var e *rpc.Error
	if !errors.As(err, &e) || e.Category != 10 || e.Code != 1 || e.Message != "service is not available" {
		t.Fatalf("resolve %q: %v, want [10, 1] service is not available", name, err)
	}
}

// resolveArgs resolves name and returns the value's args.
func resolveArgs(t *testing.T, c *rpc.Conn, name string, seed ...any) []byte {
	t.Helper()
	args, err := call(t, c, "resolve", append([]any{name}, seed...)...)
	if err != nil {
		t.Fatalf("resolve %q: %v", name, err)
	}
	return args
}

// rawConn is a client connection that writes bytes and reads frames.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	fr *rpc.FrameReader
}

func (f *fixture) dialRaw(t *testing.T) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", f.ep.String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second)) // a bound for a broken server
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, fr: rpc.NewFrameReader(c, 0)}
}

func (w *rawConn) send(parts ...any) {
	w.t.Helper()
	if _, err := w.c.Write(mp(w.t, parts...)); err != nil {
		w.t.Fatalf("write: %v", err)
	}
}

func (w *rawConn) expect(parts ...any) {
	w.t.Helper()
	raw, err := w.fr.NextRaw()
	if err != nil {
		w.t.Fatalf("reading a reply: %v", err)
	}
	if want := mp(w.t, parts...); !bytes.Equal(raw, want) {
		w.t.Fatalf("reply\n% x\nwant\n% x", raw, want)
	}
}

// expectClosed checks that the server closed the connection without sending a byte.
func (w *rawConn) expectClosed() {
	w.t.Helper()
	raw, err := w.fr.NextRaw()
	if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		w.t.Fatalf("want the connection closed without a reply, got % x, %v", raw, err)
	}
}

// echoGraph is the one-entry graph of protocol.md §4.2's example.
var echoGraph = rpc.MustGraph(3, rpc.Method{ID: 6, Name: "uuid", Dispatch: rpc.Terminal, Upstream: rpc.Primitive})

func TestLocatorResolve(t *testing.T) {
	f := newFixture(t, locator.Config{UUID: "node-a"})
	mustExpose(t, f.reg, locator.Entry{Name: "echo", Endpoints: []rpc.Endpoint{{Host: "127.0.0.1", Port: 10053}}, Version: 3, Graph: echoGraph})
	mustExpose(t, f.reg, locator.Entry{Name: "v6", Endpoints: []rpc.Endpoint{{Host: "::1", Port: 80}, {Host: "10.0.0.1", Port: 8080}}})
	echo := `93 91 92 a9 "127.0.0.1" cd 2745 03 81 06 93 a4 "uuid" 80 ` + specP
	for _, tc := range []struct {
		name  string
		frame string // the request on channel 1
		reply []any  // the args of the value
	}{
		{"the example of protocol.md §4.2", `93 01 00 91 a4 "echo"`, []any{echo}},
		{"with an empty header list", `94 01 00 91 a4 "echo" 90`, []any{echo}},
		{"a seed for a name that is no group", `93 01 00 92 a4 "echo" a4 "seed"`, []any{echo}},
		{"extra arguments are ignored", `93 01 00 93 a4 "echo" a0 c0`, []any{echo}},
		{"without a graph", `93 01 00 91 a2 "v6"`, []any{`93 92 92 a3 "::1" 50 92 a8 "10.0.0.1" cd 1f90 00 80`}},
		{"the locator itself", `93 01 00 91 a7 "locator"`,
			[]any{`93 91 92 a9 "127.0.0.1"`, uint64(f.ep.Port), `03`, specLocatorGraph}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := f.dialRaw(t)
			w.send(tc.frame)
			w.expect(append(append([]any{`94 01 00`}, tc.reply...), zeroTrace)...)
		})
	}
	t.Run("unknown service", func(t *testing.T) {
		w := f.dialRaw(t)
		w.send(`93 01 00 91 a4 "nope"`)
		w.expect(`94 01 01 92 92 0a 01 b8 "service is not available"`, zeroTrace)
		// The connection lives on.
		w.send(`93 02 00 91 a4 "echo"`)
		w.expect(`94 02 00`, echo, zeroTrace)
	})
	t.Run("through the client", func(t *testing.T) {
		c := f.dial(t)
		r, err := rpc.ResolveOn(testCtx(t), c, "echo", "")
		if err != nil {
			t.Fatal(err)
		}
		if r.Version != 3 || len(r.Endpoints) != 1 || r.Endpoints[0] != (rpc.Endpoint{Host: "127.0.0.1", Port: 10053}) {
			t.Fatalf("got %+v", r)
		}
		expectUnavailable(t, c, "nope")
		expectUnavailable(t, c, "nope", "seed")
	})
}

// Protocol violations close the connection without a reply (protocol.md §2.6), and leave
// the server and its registry as they were.
func TestLocatorFatal(t *testing.T) {
	f := newFixture(t, locator.Config{UUID: "node-a"})
	g := `81 00 93 a4 "ping" 80 ` + specP
	for _, tc := range []struct {
		name   string
		frames []string
	}{
		{"resolve with nil for the seed (surprise #3)", []string{`93 01 00 92 a1 "x" c0`}},
		{"resolve without a name", []string{`93 01 00 90`}},
		{"resolve of a number", []string{`93 01 00 91 07`}},
		{"refresh of a string", []string{`93 01 02 91 a1 "g"`}},
		{"connect without a uuid", []string{`93 01 01 90`}},
		{"publish with a graph and version 0", []string{`93 01 04 93 a3 "pub" 91 92 a9 "127.0.0.1" 01 92 00 ` + g}},
		{"publish with a host name for an address", []string{`93 01 04 92 a3 "pub" 91 92 a9 "localhost" 01`}},
		{"publish with nil for the protocol", []string{`93 01 04 93 a3 "pub" 91 92 a9 "127.0.0.1" 01 c0`}},
		{"ping inside publish", []string{`93 01 04 92 a3 "pub" 91 92 a9 "127.0.0.1" 01`, `93 01 cd fffd 90`}},
		{"revoke inside routing", []string{`93 01 05 91 a1 "r"`, `93 01 cd ffff 92 01 92 01 00`}},
		{"unknown method", []string{`93 01 07 90`}},
		{"unimplemented control settings", []string{`93 01 cd fffe 90`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := f.dialRaw(t)
			for _, fr := range tc.frames[:len(tc.frames)-1] {
				w.send(fr)
			}
			if len(tc.frames) > 1 {
				w.fr.NextRaw() // the reply to the first message (publish value, routing dump)
			}
			w.send(tc.frames[len(tc.frames)-1])
			w.expectClosed()
			eventually(t, 5*time.Second, func() error {
				if _, ok := f.reg.Lookup("pub"); ok {
					return errors.New("pub is still exposed")
				}
				return nil
			})
			// Other connections are unaffected.
			w2 := f.dialRaw(t)
			w2.send(`93 05 06 90`)
			w2.expect(`94 05 00 91 a6 "node-a"`, zeroTrace)
		})
	}
}

func TestLocatorUUIDAndCluster(t *testing.T) {
	f := newFixture(t, locator.Config{UUID: "6f1c1f2e-8c2a-4c47-9d7e-0b1f3e1d2a55"})
	w := f.dialRaw(t)
	w.send(`93 01 06 90`)
	w.expect(`94 01 00 91 da 0024 "6f1c1f2e-8c2a-4c47-9d7e-0b1f3e1d2a55"`, zeroTrace)
	w.send(`93 02 03 90`)
	w.expect(`94 02 00 91 80`, zeroTrace) // no remote nodes: {}
	c := f.dial(t)
	args, err := call(t, c, "uuid")
	var uuid string
	if err == nil {
		err = args.Scan(&uuid)
	}
	if err != nil || uuid != "6f1c1f2e-8c2a-4c47-9d7e-0b1f3e1d2a55" {
		t.Fatalf("uuid = %q, %v", uuid, err)
	}
}

func TestLocatorPublish(t *testing.T) {
	f := newFixture(t, locator.Config{UUID: "node-a"})
	graph := rpc.ServiceGraph(2, rpc.Method{Name: "ping", Dispatch: rpc.Terminal, Upstream: rpc.Primitive})
	graphBytes, _ := graph.AppendMsgpack(nil)
	eps := rpc.Endpoints{{Host: "10.0.0.7", Port: 8080}, {Host: "2a02:6b8::1", Port: 8081}}
	epsBytes := `92 92 a8 "10.0.0.7" cd 1f90 92 ab "2a02:6b8::1" cd 1f91`
	for _, tc := range []struct {
		name     string
		args     []any
		resolved []any
	}{
		{"native", []any{eps, []any{uint64(2), graph}}, []any{`93`, epsBytes, `02`, rpc.Raw(graphBytes)}},
		{"without a protocol", []any{eps}, []any{`93`, epsBytes, `00 80`}},
		{"version and an empty graph", []any{eps, []any{uint64(5), map[string]any{}}}, []any{`93`, epsBytes, `00 80`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := f.dial(t)
			for _, withdraw := range []string{"discard", "disconnect"} {
				pubConn := f.dial(t)
				ch := open(t, pubConn, "publish", append([]any{"ext"}, tc.args...)...)
				if m := recv(t, ch); m.Name != "value" || !bytes.Equal(m.Args, []byte{0x90}) {
					t.Fatalf("publish reply %s % x, want value []", m.Name, []byte(m.Args))
				}
				// The value comes right away, and the service is resolvable once it has.
				if got, want := resolveArgs(t, c, "ext"), mp(t, tc.resolved...); !bytes.Equal(got, want) {
					t.Fatalf("resolve\n% x\nwant\n% x", got, want)
				}
				if withdraw == "discard" {
					if err := ch.Send(0); err != nil { // discard: [C, 0, []]
						t.Fatal(err)
					}
				} else {
					pubConn.Close()
				}
				eventually(t, 5*time.Second, func() error {
					if _, err := call(t, c, "resolve", "ext"); err == nil {
						return fmt.Errorf("ext still resolves after %s", withdraw)
					}
					return nil
				})
				expectUnavailable(t, c, "ext")
			}
		})
	}
	t.Run("a taken name", func(t *testing.T) {
		c := f.dial(t)
		_, err := call(t, c, "publish", "locator", eps)
		var e *rpc.Error
		if !errors.As(err, &e) || e.Category != 10 {
			t.Fatalf("publish of a taken name: %v, want a locator error", err)
		}
		if got := resolveArgs(t, c, "locator"); !bytes.Contains(got, mp(t, uint64(f.ep.Port))) {
			t.Fatalf("the locator entry changed: % x", got)
		}
	})
}

// groupDump is the args of a routing write: [{group: [[point, name], ...]}].
func groupDump(t *testing.T, groups map[string]map[string]uint64) []byte {
	t.Helper()
	names := make([]string, 0, len(groups))
	for n := range groups {
		names = append(names, n)
	}
	slices.Sort(names)
	b := rpc.AppendMapHeader(rpc.AppendArrayHeader(nil, 1), len(names))
	for _, n := range names {
		r, err := locator.NewRing(groups[n])
		if err != nil {
			t.Fatal(err)
		}
		b = rpc.AppendString(b, n)
		b = rpc.AppendArrayHeader(b, len(r.Points()))
		for _, p := range r.Points() {
			b = append(b, 0x92)
			b = rpc.AppendUint(b, uint64(p.Point))
			b = rpc.AppendString(b, p.Name)
		}
	}
	return b
}

func refresh(t *testing.T, c *rpc.Conn, groups ...string) {
	t.Helper()
	if groups == nil {
		groups = []string{}
	}
	args, err := call(t, c, "refresh", groups)
	if err != nil || !bytes.Equal(args, []byte{0x90}) {
		t.Fatalf("refresh %v: % x, %v", groups, []byte(args), err)
	}
}

func TestLocatorRouting(t *testing.T) {
	f := newFixture(t, locator.Config{UUID: "node-a"})
	for i, n := range []string{"echo-a", "echo-b", "echo-c"} {
		mustExpose(t, f.reg, locator.Entry{Name: n, Endpoints: []rpc.Endpoint{{Host: "127.0.0.1", Port: uint16(5000 + i)}}, Version: 1})
	}
	c := f.dial(t)
	router := open(t, c, "routing", "router-1")
	expectWrite(t, router, mp(t, `91 80`)) // at once; no groups yet

	g := map[string]uint64{"echo-a": 1, "echo-b": 2, "echo-c": 7}
	f.writeGroup("g", map[string]any{"echo-a": 1, "echo-b": 2, "echo-c": 7}, "group", "active")
	refresh(t, c, "g")
	expectWrite(t, router, groupDump(t, map[string]map[string]uint64{"g": g}))

	t.Run("resolve a group with a seed", func(t *testing.T) {
		ring, _ := locator.NewRing(g)
		hit := map[string]bool{}
		for i := range 60 {
			seed := fmt.Sprintf("user-%d", i)
			member := ring.Pick(seed)
			hit[member] = true
			if got, want := resolveArgs(t, c, "g", seed), resolveArgs(t, c, member); !bytes.Equal(got, want) {
				t.Fatalf("resolve(g, %q) = % x, want %s: % x", seed, got, member, want)
			}
		}
		if len(hit) < 2 {
			t.Fatalf("60 seeds all chose %v", hit)
		}
		// Without a seed, or with "", some member.
		for _, seed := range [][]any{nil, {""}} {
			got := resolveArgs(t, c, "g", seed...)
			if !slices.ContainsFunc([]string{"echo-a", "echo-b", "echo-c"}, func(n string) bool {
				return bytes.Equal(got, resolveArgs(t, c, n))
			}) {
				t.Fatalf("resolve(g, %v) = % x, not a member", seed, got)
			}
		}
	})

	t.Run("a member that is not exposed", func(t *testing.T) {
		f.writeGroup("ghosts", map[string]any{"ghost": 1}, "group", "active")
		refresh(t, c, "ghosts")
		expectWrite(t, router, groupDump(t, map[string]map[string]uint64{"g": g, "ghosts": {"ghost": 1}}))
		expectUnavailable(t, c, "ghosts", "seed")
	})

	t.Run("refresh of nothing reloads every group", func(t *testing.T) {
		f.writeGroup("h", map[string]any{"echo-a": 1.0}, "active", "group", "extra")
		f.writeGroup("inactive", map[string]any{"echo-a": 1}, "group")
		refresh(t, c)
		expectWrite(t, router, groupDump(t, map[string]map[string]uint64{"g": g, "ghosts": {"ghost": 1}, "h": {"echo-a": 1}}))
		if got, want := resolveArgs(t, c, "h", "any"), resolveArgs(t, c, "echo-a"); !bytes.Equal(got, want) {
			t.Fatalf("resolve(h) = % x, want echo-a", got)
		}
		expectUnavailable(t, c, "inactive")
	})

	t.Run("deactivated and removed groups disappear", func(t *testing.T) {
		f.writeGroup("g", map[string]any{"echo-a": 1}, "group") // no longer active
		refresh(t, c, "g")
		expectWrite(t, router, groupDump(t, map[string]map[string]uint64{"ghosts": {"ghost": 1}, "h": {"echo-a": 1}}))
		expectUnavailable(t, c, "g", "seed")
		if err := f.store.Remove(testCtx(t), locator.GroupsCollection, "h"); err != nil {
			t.Fatal(err)
		}
		if err := f.store.Remove(testCtx(t), locator.GroupsCollection, "ghosts"); err != nil {
			t.Fatal(err)
		}
		refresh(t, c)
		expectWrite(t, router, mp(t, `91 80`))
		expectUnavailable(t, c, "h")
	})

	t.Run("a broken group is an error and is not loaded", func(t *testing.T) {
		for _, blob := range [][]byte{mp(t, `91 01`), mp(t, `81 a1 "a" a1 "x"`), mp(t, `80`), mp(t, `81 a1 "a" 00`)} {
			if err := f.store.Write(testCtx(t), locator.GroupsCollection, "bad", blob, locator.GroupTags); err != nil {
				t.Fatal(err)
			}
			_, err := call(t, c, "refresh", []string{"bad"})
			var e *rpc.Error
			if !errors.As(err, &e) || e.Category != 10 || e.Code != 2 {
				t.Fatalf("refresh of % x: %v, want [10, 2]", blob, err)
			}
			expectWrite(t, router, mp(t, `91 80`)) // routers still get a dump
			expectUnavailable(t, c, "bad")
		}
	})

	t.Run("a new router with the same id replaces the old one", func(t *testing.T) {
		c2 := f.dial(t)
		r2 := open(t, c2, "routing", "router-1")
		expectWrite(t, r2, mp(t, `91 80`))
		f.writeGroup("g", map[string]any{"echo-b": 1}, locator.GroupTags...)
		refresh(t, c, "g") // on the old router's connection: its dump would come first
		expectNothing(t, router)
		expectWrite(t, r2, groupDump(t, map[string]map[string]uint64{"g": {"echo-b": 1}}))
	})

	t.Run("discard detaches a router without a close", func(t *testing.T) {
		r3 := open(t, c, "routing", "router-3")
		expectWrite(t, r3, groupDump(t, map[string]map[string]uint64{"g": {"echo-b": 1}}))
		if err := r3.Send(0); err != nil { // discard
			t.Fatal(err)
		}
		refresh(t, c, "g")
		expectNothing(t, r3)
	})
}

// A GroupStore that cannot be read: refresh answers [10, 2].
type brokenStore struct{}

func (brokenStore) Read(context.Context, string, string) ([]byte, error) {
	return nil, errors.New("disk on fire")
}
func (brokenStore) Find(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("disk on fire")
}

func TestLocatorRefreshStorageError(t *testing.T) {
	leakCheck(t)
	svc, err := locator.New(locator.Config{UUID: "node-a"}, locator.NewRegistry(), brokenStore{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ep := rpctest.Serve(t, svc.Dispatcher(), rpc.SessionConfig{})
	c, err := rpc.Dial(testCtx(t), []rpc.Endpoint{ep}, rpc.LocatorGraph, rpc.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, groups := range [][]string{{}, {"g"}} {
		_, err := call(t, c, "refresh", groups)
		var e *rpc.Error
		if !errors.As(err, &e) || e.Category != 10 || e.Code != 2 || !strings.Contains(e.Message, "disk on fire") {
			t.Fatalf("refresh %v: %v, want [10, 2] with the cause", groups, err)
		}
	}
}

func TestLocatorNewRejectsConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  locator.Config
	}{
		{"no uuid", locator.Config{}},
		{"negative watch buffer", locator.Config{UUID: "a", WatchBuffer: -1}},
		{"unencodable extra", locator.Config{UUID: "a", Extra: map[string]any{"k": make(chan int)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := locator.New(tc.cfg, locator.NewRegistry(), nil, nil); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
}

// services is the args of a connect write: [uuid, {name: info, ...}], the infos in mp's
// notation.
func services(t *testing.T, uuid string, nameInfo ...string) []byte {
	t.Helper()
	b := rpc.AppendString([]byte{0x92}, uuid)
	b = rpc.AppendMapHeader(b, len(nameInfo)/2)
	for i := 0; i+1 < len(nameInfo); i += 2 {
		b = append(rpc.AppendString(b, nameInfo[i]), mp(t, nameInfo[i+1])...)
	}
	return b
}

func TestLocatorConnect(t *testing.T) {
	extra := map[string]any{"x-cocaine-cluster": "blue"}
	extraBytes := mp(t, `81 b1 "x-cocaine-cluster" a4 "blue"`)
	cfg := locator.Config{UUID: "node-a", Restrict: []string{"secret", "secret3"}, Extra: extra}
	echoInfo := `93 91 92 a9 "127.0.0.1" cd 2745 03 81 06 93 a4 "uuid" 80 ` + specP

	t.Run("only restricted services: an empty snapshot", func(t *testing.T) {
		f := newFixture(t, cfg) // holds only the locator
		mustExpose(t, f.reg, locator.Entry{Name: "secret", Endpoints: []rpc.Endpoint{{Host: "127.0.0.1", Port: 1}}})
		stream := open(t, f.dial(t), "connect", "peer-1")
		expectWrite(t, stream, services(t, "node-a"))
	})

	f := newFixture(t, cfg)
	mustExpose(t, f.reg, locator.Entry{Name: "echo", Endpoints: []rpc.Endpoint{{Host: "127.0.0.1", Port: 10053}}, Version: 3, Graph: echoGraph})
	mustExpose(t, f.reg, locator.Entry{Name: "secret", Endpoints: []rpc.Endpoint{{Host: "127.0.0.1", Port: 1}}})
	hidden := locator.Entry{Name: "hidden", Endpoints: []rpc.Endpoint{{Host: "127.0.0.1", Port: 2}}, Restricted: true}
	mustExpose(t, f.reg, hidden)

	c := f.dial(t)
	stream := open(t, c, "connect", "peer-1")
	m := expectWrite(t, stream, services(t, "node-a", "echo", echoInfo))
	checkExtra := func(m rpc.Message) {
		t.Helper()
		var n int
		for _, h := range m.Headers {
			if h.Name == rpc.HeaderLocatorExtra {
				n++
				if !bytes.Equal(h.Value, extraBytes) {
					t.Fatalf("extra header % x, want % x", h.Value, extraBytes)
				}
			}
		}
		if n != 1 {
			t.Fatalf("%d %s headers in %v", n, rpc.HeaderLocatorExtra, m.Headers)
		}
	}
	checkExtra(m)

	// Restricted changes send nothing: the next write is the one after them.
	wSecret2 := mustExpose(t, f.reg, locator.Entry{Name: "secret2", Endpoints: []rpc.Endpoint{{Host: "127.0.0.1", Port: 3}}, Restricted: true})
	wSecret3 := mustExpose(t, f.reg, locator.Entry{Name: "secret3", Endpoints: []rpc.Endpoint{{Host: "127.0.0.1", Port: 3}}})
	wLate := mustExpose(t, f.reg, locator.Entry{Name: "late", Endpoints: []rpc.Endpoint{{Host: "127.0.0.1", Port: 4}}, Version: 3, Graph: echoGraph})
	lateInfo := `93 91 92 a9 "127.0.0.1" 04 03 81 06 93 a4 "uuid" 80 ` + specP
	checkExtra(expectWrite(t, stream, services(t, "node-a", "late", lateInfo)))
	wSecret2()
	wSecret3()
	wLate()
	// A removal: empty endpoints, the same version and graph.
	checkExtra(expectWrite(t, stream, services(t, "node-a", "late", `93 90 03 81 06 93 a4 "uuid" 80 `+specP)))

	// A published service comes and goes; withdrawn it is [[], 0, {}].
	pub := open(t, c, "publish", "ext", rpc.Endpoints{{Host: "10.1.1.1", Port: 9}})
	expectWrite(t, stream, services(t, "node-a", "ext", `93 91 92 a8 "10.1.1.1" 09 00 80`))
	if err := pub.Send(0); err != nil {
		t.Fatal(err)
	}
	expectWrite(t, stream, services(t, "node-a", "ext", `93 90 00 80`))

	// A second stream for the same peer closes the first.
	c2 := f.dial(t)
	stream2 := open(t, c2, "connect", "peer-1")
	checkExtra(expectWrite(t, stream2, services(t, "node-a", "echo", echoInfo)))
	expectClose(t, stream)
	// Another peer has its own stream.
	other := open(t, c2, "connect", "peer-2")
	expectWrite(t, other, services(t, "node-a", "echo", echoInfo))
	mustExpose(t, f.reg, locator.Entry{Name: "last", Endpoints: []rpc.Endpoint{{Host: "127.0.0.1", Port: 5}}})
	for _, s := range []*rpc.Channel{stream2, other} {
		expectWrite(t, s, services(t, "node-a", "last", `93 91 92 a9 "127.0.0.1" 05 00 80`))
	}
}

// Run returns after cancel, with every stream it serves closed and every goroutine gone
// (the fixture's leak check runs last).
func TestLocatorRunShutdown(t *testing.T) {
	f := newFixture(t, locator.Config{UUID: "node-a"})
	c := f.dial(t)
	pub := open(t, c, "publish", "ext", rpc.Endpoints{{Host: "10.1.1.1", Port: 9}})
	recv(t, pub)
	streams := []*rpc.Channel{
		open(t, c, "connect", "peer-1"),
		open(t, c, "connect", "peer-2"),
		open(t, c, "routing", "router-1"),
	}
	for _, s := range streams {
		recv(t, s) // the snapshot or dump
	}
	if err := f.stop(); err != nil {
		t.Fatal(err)
	}
	for _, s := range streams {
		expectClose(t, s)
	}
	// The server still serves: a connect now ends at once, other methods answer.
	expectClose(t, open(t, c, "connect", "peer-3"))
	if _, err := call(t, c, "uuid"); err != nil {
		t.Fatal(err)
	}
}
