package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"github.com/cocaine/cocaine/internal/daemon"
	"github.com/cocaine/cocaine/rpc"
)

// Bounds on waiting. They only turn a hang into a failure: no test asserts how long
// anything takes.
const (
	startTimeout = 15 * time.Second // daemon start, daemon stop
	callTimeout  = 10 * time.Second // one call, one expected close
)

// testConfig is a node on 127.0.0.1 with every port chosen by the kernel, its data in a
// fresh temporary directory and no log sink.
func testConfig(t *testing.T) daemon.Config {
	t.Helper()
	cfg := daemon.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Network.Pinned = map[string]int{"locator": 0, "raft": 0}
	cfg.Logging.Sinks = nil
	// A single-host cluster elects itself after one election timeout: keep it short.
	cfg.Raft.HeartbeatTimeout = daemon.Duration(100 * time.Millisecond)
	cfg.Raft.ElectionTimeout = daemon.Duration(100 * time.Millisecond)
	cfg.Raft.LeaderLeaseTimeout = daemon.Duration(50 * time.Millisecond)
	return cfg
}

// testLog is the daemon's log, attached to the test.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// node is a daemon running in-process.
type node struct {
	d      *daemon.Daemon
	cfg    daemon.Config
	cancel context.CancelFunc
	done   chan error // Run's result; buffered so Run never blocks on it
	err    error      // Run's result once stopped
	halted bool
}

// startNode runs a daemon with cfg and waits until it is ready. The daemon is stopped
// when the test ends, unless the test stopped it already.
func startNode(t *testing.T, cfg daemon.Config) *node {
	t.Helper()
	d, err := daemon.New(cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// one slot: Run's only result, read once by stop
	n := &node{d: d, cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- d.Run(ctx) }()
	t.Cleanup(func() {
		if err := n.stop(t); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	select {
	case <-d.Ready():
	case err := <-n.done:
		n.halted, n.err = true, err
		t.Fatalf("daemon stopped before it was ready: %v", err)
	case <-time.After(startTimeout):
		t.Fatal("daemon not ready")
	}
	return n
}

// stop cancels the daemon and returns Run's result. Calling it again returns the same.
func (n *node) stop(t *testing.T) error {
	t.Helper()
	if n.halted {
		return n.err
	}
	n.cancel()
	select {
	case n.err = <-n.done:
	case <-time.After(startTimeout):
		var buf bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&buf, 1)
		t.Fatalf("Run did not return after cancellation; goroutines:\n%s", buf.String())
	}
	n.halted = true
	return n.err
}

// locator is where the node's locator listens.
func (n *node) locator() []rpc.Endpoint { return n.d.Endpoint("locator") }

// ctxT is a context bounded by callTimeout and cancelled when the test ends.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// resolve asks the node's locator, over the wire, where name lives.
func resolve(t *testing.T, n *node, name string) rpc.ResolveResult {
	t.Helper()
	r, err := rpc.Resolve(ctxT(t), n.locator(), name, "", rpc.DialConfig{})
	if err != nil {
		t.Fatalf("resolve %q: %v", name, err)
	}
	return r
}

// connect resolves name and connects to it; the connection is closed when the test ends.
func connect(t *testing.T, n *node, name string) *rpc.Conn {
	t.Helper()
	c, err := rpc.Service(ctxT(t), n.locator(), name, rpc.DialConfig{Log: testLog(t)})
	if err != nil {
		t.Fatalf("connect to %q: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialLocator connects to the node's locator with the well-known locator graph.
func dialLocator(t *testing.T, n *node) *rpc.Conn {
	t.Helper()
	c, err := rpc.Dial(ctxT(t), n.locator(), rpc.LocatorGraph, rpc.DialConfig{Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// call makes a primitive call and returns its value's args, or the error reply.
func call(t *testing.T, c *rpc.Conn, method string, args ...any) (rpc.Args, error) {
	t.Helper()
	ctx := ctxT(t)
	ch, err := c.Call(ctx, method, args...)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return ch.Get(ctx)
}

// mustCall is call for a call that must succeed; it scans the value into dst.
func mustCall(t *testing.T, c *rpc.Conn, method string, args []any, dst ...any) {
	t.Helper()
	a, err := call(t, c, method, args...)
	if err != nil {
		t.Fatalf("%s%v: %v", method, args, err)
	}
	if err := a.Scan(dst...); err != nil {
		t.Fatalf("%s%v: scan: %v", method, args, err)
	}
}

// wireError returns err as a Cocaine error, failing the test if it is not one.
func wireError(t *testing.T, err error) *rpc.Error {
	t.Helper()
	var e *rpc.Error
	if !errors.As(err, &e) {
		t.Fatalf("want an error reply, got %v", err)
	}
	return e
}

// eventually polls f until it returns nil, failing the test with f's last error after
// timeout.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %v", timeout, err)
		}
		<-tick.C
	}
}

// settledGoroutines returns the number of goroutines once it has stayed the same over
// ten samples 20ms apart (or after five seconds).
func settledGoroutines() int {
	n, same := runtime.NumGoroutine(), 0
	for i := 0; i < 250 && same < 10; i++ {
		time.Sleep(20 * time.Millisecond)
		if m := runtime.NumGoroutine(); m == n {
			same++
		} else {
			n, same = m, 0
		}
	}
	return n
}

// noGoroutineLeak fails the test unless the number of goroutines comes back down to
// before, and shows the goroutines that are left.
func noGoroutineLeak(t *testing.T, before int) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(startTimeout)
	for {
		now := runtime.NumGoroutine()
		if now <= before {
			return
		}
		if time.Now().After(deadline) {
			var buf bytes.Buffer
			pprof.Lookup("goroutine").WriteTo(&buf, 1)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, now, buf.String())
		}
		<-tick.C
	}
}

// portFree reports whether ep can be bound again.
func portFree(ep rpc.Endpoint) error {
	ln, err := net.Listen("tcp", ep.String())
	if err != nil {
		return err
	}
	return ln.Close()
}

// freePort returns a port the kernel just handed out and took back.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// frame encodes [channel, type, args] as a client would send it.
func frame(channel, typ uint64, args ...any) []byte {
	b := []byte{0x93}
	b = rpc.AppendUint(b, channel)
	b = rpc.AppendUint(b, typ)
	b, err := rpc.AppendArgs(b, args...)
	if err != nil {
		panic(err)
	}
	return b
}

// rawConn is a plain TCP connection with a frame reader for the replies.
type rawConn struct {
	net.Conn
	fr *rpc.FrameReader
}

// dialRaw opens a TCP connection to ep; it is closed when the test ends.
func dialRaw(t *testing.T, ep rpc.Endpoint) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", ep.String(), callTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{Conn: c, fr: rpc.NewFrameReader(c, 0)}
}

// send writes b. A reset is tolerated: the server may already have closed the connection
// on an earlier protocol error, which the caller then checks.
func (c *rawConn) send(t *testing.T, b []byte) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(callTimeout))
	if _, err := c.Write(b); err != nil && !isReset(err) {
		t.Fatalf("write: %v", err)
	}
}

// next reads one reply frame.
func (c *rawConn) next(t *testing.T) rpc.Frame {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(callTimeout))
	f, err := c.fr.Next()
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	return f
}

// expectClosed checks that the server closes the connection without sending anything.
func (c *rawConn) expectClosed(t *testing.T) {
	t.Helper()
	if n := c.fr.Buffered(); n > 0 {
		t.Fatalf("the server sent %d unexpected bytes", n)
	}
	c.SetReadDeadline(time.Now().Add(callTimeout))
	var buf [64]byte
	n, err := c.Read(buf[:])
	switch {
	case n > 0:
		t.Fatalf("the server replied % x instead of closing the connection", buf[:n])
	case err == nil:
		t.Fatal("read returned nothing and no error")
	case errors.Is(err, io.EOF) || isReset(err):
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the server did not close the connection within %s", callTimeout)
		}
		t.Fatalf("read: %v", err)
	}
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// renderState writes a protocol state the way protocol.md §3.5 lists graphs: nil for
// "stay", {} for terminal, else {id: ["name", next], ...} in id order.
func renderState(s *rpc.State) string {
	if s == nil {
		return "nil"
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, tr := range s.Transitions() {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d: [%q, %s]", tr.ID, tr.Name, renderState(tr.Next))
	}
	b.WriteByte('}')
	return b.String()
}

// renderGraph renders every root entry as id -> ["name", dispatch, upstream].
func renderGraph(g *rpc.Graph) map[uint64]string {
	out := map[uint64]string{}
	for _, m := range g.Methods() {
		out[m.ID] = fmt.Sprintf("[%q, %s, %s]", m.Name, renderState(m.Dispatch), renderState(m.Upstream))
	}
	return out
}
