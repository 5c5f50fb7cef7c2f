package storage_test

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

	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/rpc/rpctest"
	"github.com/cocaine/cocaine/services/storage"
)

// These tests serve storage.New over a real loopback server, with Service.Run in a
// goroutine, and talk to it through rpc clients and raw connections. Each runs once per
// backend: bolt, and replicated over a single-process consensus.

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

type server struct {
	ep   rpc.Endpoint
	b    storage.Backend
	stop func() error // cancels Run and waits for it; idempotent
}

// backend opens an empty backend with the given value limit (its default if 0), closed
// when the test ends.
type backend func(t *testing.T, maxValueSize int) storage.Backend

// forEachBackend runs test once for each Backend, as a subtest named after it: bolt, and
// replicated without and with a blob store.
func forEachBackend(t *testing.T, test func(t *testing.T, open backend)) {
	for _, be := range []struct {
		name string
		open backend
	}{
		{"bolt", func(t *testing.T, maxValueSize int) storage.Backend {
			b, err := storage.OpenBolt(filepath.Join(t.TempDir(), "storage.db"), storage.BoltOptions{MaxValueSize: maxValueSize})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		}},
		{"replicated", func(t *testing.T, maxValueSize int) storage.Backend {
			return storage.NewLocalReplicated(t, storage.ReplicatedConfig{MaxValueSize: maxValueSize})
		}},
		// Every value over 8 bytes goes to the blob store, whose limit is the test's.
		{"replicated with blobs", func(t *testing.T, maxValueSize int) storage.Backend {
			return storage.NewLocalReplicatedBlobs(t, storage.ReplicatedConfig{MaxValueSize: 8}, maxValueSize)
		}},
	} {
		t.Run(be.name, func(t *testing.T) { test(t, be.open) })
	}
}

func serve(t *testing.T, open backend, maxValueSize int) *server {
	t.Helper()
	leakCheck(t)
	b := open(t, maxValueSize)
	svc := storage.New(b, nil)
	s := &server{b: b, ep: rpctest.Serve(t, svc.Dispatcher(), rpc.SessionConfig{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	var runErr error
	s.stop = func() error {
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
		if err := s.stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func (s *server) dial(t *testing.T) *rpc.Conn {
	t.Helper()
	c, err := rpc.Dial(testCtx(t), []rpc.Endpoint{s.ep}, storage.Graph, rpc.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// call sends a request and returns the value's args, or the error reply.
func call(t *testing.T, c *rpc.Conn, method string, args ...any) (rpc.Args, error) {
	t.Helper()
	ctx := testCtx(t)
	ch, err := c.Call(ctx, method, args...)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return ch.Get(ctx)
}

func mustWrite(t *testing.T, c *rpc.Conn, collection, key string, value []byte, tags ...string) {
	t.Helper()
	args := []any{collection, key, value}
	if tags != nil {
		args = append(args, tags)
	}
	got, err := call(t, c, "write", args...)
	if err != nil || !bytes.Equal(got, []byte{0x90}) {
		t.Fatalf("write %s/%s: % x, %v; want value []", collection, key, []byte(got), err)
	}
}

func read(t *testing.T, c *rpc.Conn, collection, key string) ([]byte, error) {
	t.Helper()
	args, err := call(t, c, "read", collection, key)
	if err != nil {
		return nil, err
	}
	var v []byte
	if err := args.Scan(&v); err != nil {
		t.Fatalf("read reply: %v", err)
	}
	return v, nil
}

func mustRead(t *testing.T, c *rpc.Conn, collection, key string) []byte {
	t.Helper()
	v, err := read(t, c, collection, key)
	if err != nil {
		t.Fatalf("read %s/%s: %v", collection, key, err)
	}
	return v
}

func find(t *testing.T, c *rpc.Conn, collection string, tags ...string) []string {
	t.Helper()
	if tags == nil {
		tags = []string{}
	}
	args, err := call(t, c, "find", collection, tags)
	if err != nil {
		t.Fatalf("find %s %v: %v", collection, tags, err)
	}
	var keys []string
	if err := args.Scan(&keys); err != nil {
		t.Fatalf("find reply: %v", err)
	}
	return keys
}

// wantError checks an error reply's category and code, and that its message contains
// every one of parts.
func wantError(t *testing.T, err error, category, code int, parts ...string) {
	t.Helper()
	var e *rpc.Error
	if !errors.As(err, &e) || e.Category != category || e.Code != code {
		t.Fatalf("got %v, want an error reply [%d, %d]", err, category, code)
	}
	for _, p := range parts {
		if !strings.Contains(e.Message, p) {
			t.Fatalf("error message %q does not mention %q", e.Message, p)
		}
	}
}

func TestStorageRoundTrips(t *testing.T) {
	forEachBackend(t, testStorageRoundTrips)
}

func testStorageRoundTrips(t *testing.T, open backend) {
	s := serve(t, open, 0)
	c := s.dial(t)
	every := make([]byte, 256)
	for i := range every {
		every[i] = byte(i)
	}
	for _, tc := range []struct {
		name  string
		key   string
		value []byte
		tags  []string
	}{
		{"plain", "echo", []byte("manifest"), nil},
		{"every byte value", "bytes", every, []string{"bin"}},
		{"empty value", "empty", []byte{}, []string{"none"}},
		{"large value", "large", bytes.Repeat([]byte("0123456789abcdef"), 1<<14), []string{"big", "app"}},
		{"odd names", "ключ with spaces/and/slashes", []byte{0xc1}, []string{"тег"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustWrite(t, c, "apps", tc.key, tc.value, tc.tags...)
			if got := mustRead(t, c, "apps", tc.key); !bytes.Equal(got, tc.value) {
				t.Fatalf("read %d bytes, want %d", len(got), len(tc.value))
			}
			for _, tag := range tc.tags {
				if keys := find(t, c, "apps", tag); !slices.Contains(keys, tc.key) {
					t.Fatalf("find %q = %v, want %q in it", tag, keys, tc.key)
				}
			}
		})
	}

	t.Run("find", func(t *testing.T) {
		mustWrite(t, c, "manifests", "a", []byte("1"), "app", "active")
		mustWrite(t, c, "manifests", "b", []byte("2"), "app")
		mustWrite(t, c, "manifests", "c", []byte("3"), "active", "app", "app")
		for _, tc := range []struct {
			name string
			tags []string
			want []string
		}{
			{"one tag", []string{"app"}, []string{"a", "b", "c"}},
			{"every tag must match", []string{"app", "active"}, []string{"a", "c"}},
			{"no tags", nil, []string{}},
			{"an unknown tag", []string{"app", "nope"}, []string{}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if got := find(t, c, "manifests", tc.tags...); !slices.Equal(got, tc.want) {
					t.Fatalf("find %v = %v, want %v", tc.tags, got, tc.want)
				}
			})
		}
		if got := find(t, c, "no-such-collection", "app"); len(got) != 0 {
			t.Fatalf("find in an unknown collection = %v", got)
		}
		// An overwrite replaces the tags.
		mustWrite(t, c, "manifests", "a", []byte("1'"), "retired")
		if got := find(t, c, "manifests", "app"); !slices.Equal(got, []string{"b", "c"}) {
			t.Fatalf("after the overwrite: %v", got)
		}
	})

	t.Run("remove", func(t *testing.T) {
		mustWrite(t, c, "tmp", "k", []byte("v"), "t")
		for range 2 { // the second removes a missing key, which succeeds
			got, err := call(t, c, "remove", "tmp", "k")
			if err != nil || !bytes.Equal(got, []byte{0x90}) {
				t.Fatalf("remove: % x, %v", []byte(got), err)
			}
		}
		_, err := read(t, c, "tmp", "k")
		wantError(t, err, 12, 2, "tmp/k")
		if got := find(t, c, "tmp", "t"); len(got) != 0 {
			t.Fatalf("find after remove = %v", got)
		}
		if _, err := call(t, c, "remove", "never-created", "k"); err != nil {
			t.Fatalf("remove in a missing collection: %v", err)
		}
	})
}

// The exact bytes of protocol.md §1.3 and §4.3.
func TestStorageWire(t *testing.T) {
	forEachBackend(t, testStorageWire)
}

func testStorageWire(t *testing.T, open backend) {
	s := serve(t, open, 0)
	w := dialRaw(t, s.ep)
	trace := zeroTrace()
	w.send(frame(2, 1, "apps", "echo", []byte("blob")))
	w.expect(append([]byte{0x94, 0x02, 0x00, 0x90}, trace...))
	w.send([]byte{0x93, 0x03, 0x00, 0x92, 0xa4, 'a', 'p', 'p', 's', 0xa4, 'e', 'c', 'h', 'o'})
	w.expect(append([]byte{0x94, 0x03, 0x00, 0x91, 0xa4, 'b', 'l', 'o', 'b'}, trace...))
	w.send(frame(4, 0, "apps", "nope"))
	msg := "storage: read apps/nope: no such key"
	w.expect(append(append([]byte{0x94, 0x04, 0x01, 0x92, 0x92, 0x0c, 0x02}, rpc.AppendString(nil, msg)...), trace...))
}

func TestStorageErrors(t *testing.T) {
	forEachBackend(t, testStorageErrors)
}

func testStorageErrors(t *testing.T, open backend) {
	s := serve(t, open, 16)
	c := s.dial(t)
	mustWrite(t, c, "apps", "echo", []byte("v"))

	t.Run("missing key", func(t *testing.T) {
		_, err := read(t, c, "apps", "nope")
		wantError(t, err, 12, 2, "apps/nope")
		_, err = read(t, c, "no-such-collection", "echo")
		wantError(t, err, 12, 2, "no-such-collection/echo")
	})

	long := strings.Repeat("k", storage.MaxNameSize+1)
	for _, tc := range []struct {
		name   string
		method string
		args   []any
	}{
		{"read: empty collection", "read", []any{"", "k"}},
		{"read: empty key", "read", []any{"apps", ""}},
		{"read: NUL in the key", "read", []any{"apps", "a\x00b"}},
		{"read: key too long", "read", []any{"apps", long}},
		{"write: empty key", "write", []any{"apps", "", []byte("v")}},
		{"write: collection too long", "write", []any{long, "k", []byte("v")}},
		{"write: empty tag", "write", []any{"apps", "k", []byte("v"), []string{"ok", ""}}},
		{"write: NUL in a tag", "write", []any{"apps", "k", []byte("v"), []string{"a\x00"}}},
		{"remove: empty collection", "remove", []any{"", "k"}},
		{"find: empty collection", "find", []any{"", []string{"t"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := call(t, c, tc.method, tc.args...)
			wantError(t, err, 12, 22)
		})
	}
	if _, err := read(t, c, "apps", "k"); err == nil {
		t.Fatal("a write with an invalid tag was applied")
	}

	t.Run("value too large", func(t *testing.T) {
		_, err := call(t, c, "write", "apps", "big", bytes.Repeat([]byte("x"), 17))
		wantError(t, err, 12, 27, "17")
		_, err = read(t, c, "apps", "big")
		wantError(t, err, 12, 2)
		mustWrite(t, c, "apps", "big", bytes.Repeat([]byte("x"), 16)) // the limit itself is fine
	})

	// The connection survived every error reply.
	if got := mustRead(t, c, "apps", "echo"); string(got) != "v" {
		t.Fatalf("read %q", got)
	}
}

// The replicated backend refuses large values with EFBIG, and says where they belong.
func TestStorageReplicatedTooLarge(t *testing.T) {
	s := serve(t, func(t *testing.T, _ int) storage.Backend {
		return storage.NewLocalReplicated(t, storage.ReplicatedConfig{})
	}, 0)
	c := s.dial(t)
	_, err := call(t, c, "write", "apps", "archive", make([]byte, storage.DefaultReplicatedValueSize+1))
	wantError(t, err, 12, 27, fmt.Sprint(storage.DefaultReplicatedValueSize+1), "blob store")
	mustWrite(t, c, "apps", "archive", make([]byte, storage.DefaultReplicatedValueSize))
}

// Undecodable arguments close the connection without a reply (protocol.md §2.6).
func TestStorageFatal(t *testing.T) {
	forEachBackend(t, testStorageFatal)
}

func testStorageFatal(t *testing.T, open backend) {
	s := serve(t, open, 0)
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"read with one argument", []byte{0x93, 0x01, 0x00, 0x91, 0xa1, 'c'}},
		{"write with nil for the tags", []byte{0x93, 0x01, 0x01, 0x94, 0xa1, 'c', 0xa1, 'k', 0xa1, 'v', 0xc0}},
		{"find with a string for the tags", frame(1, 3, "c", "t")},
		{"read of a number", []byte{0x93, 0x01, 0x00, 0x92, 0x01, 0x02}},
		{"unknown method", []byte{0x93, 0x01, 0x04, 0x90}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := dialRaw(t, s.ep)
			w.send(tc.frame)
			w.expectClosed()
		})
	}
}

// Writes pipelined on one connection are applied in the order they were sent: the last
// one wins, and a read sent right after them sees it.
func TestStoragePipelinedWrites(t *testing.T) {
	forEachBackend(t, testStoragePipelinedWrites)
}

func testStoragePipelinedWrites(t *testing.T, open backend) {
	s := serve(t, open, 0)
	w := dialRaw(t, s.ep)
	const n = 100
	var batch []byte
	for i := range n {
		batch = append(batch, frame(uint64(i+1), 1, "c", "k", fmt.Appendf(nil, "v%03d", i))...)
	}
	batch = append(batch, frame(n+1, 0, "c", "k")...)
	w.send(batch) // one write: nothing waits for a reply
	replies := map[uint64]rpc.Frame{}
	for range n + 1 {
		f := w.next()
		if _, dup := replies[f.Channel]; dup {
			t.Fatalf("two replies on channel %d", f.Channel)
		}
		replies[f.Channel] = f
	}
	for ch := uint64(1); ch <= n; ch++ {
		if f, ok := replies[ch]; !ok || f.Type != 0 || !bytes.Equal(f.Args, []byte{0x90}) {
			t.Fatalf("write on channel %d: %+v", ch, f)
		}
	}
	var got []byte
	if f := replies[n+1]; f.Type != 0 || rpc.Args(f.Args).Scan(&got) != nil || string(got) != "v099" {
		t.Fatalf("the read after the writes: type %d, % x; want value [v099]", f.Type, []byte(f.Args))
	}
	if v := mustRead(t, s.dial(t), "c", "k"); string(v) != "v099" {
		t.Fatalf("another connection reads %q", v)
	}
}

// Work outlives the connection that asked for it.
func TestStorageWriteAfterDisconnect(t *testing.T) {
	forEachBackend(t, testStorageWriteAfterDisconnect)
}

func testStorageWriteAfterDisconnect(t *testing.T, open backend) {
	s := serve(t, open, 0)
	for _, tc := range []struct {
		name   string
		writes int
	}{
		{"one write", 1},
		{"twenty pipelined writes", 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("k%d", tc.writes)
			w := dialRaw(t, s.ep)
			var batch []byte
			for i := range tc.writes {
				batch = append(batch, frame(uint64(i+1), 1, "c", key, fmt.Appendf(nil, "v%d", i))...)
			}
			w.send(batch)
			w.c.Close()
			want := fmt.Sprintf("v%d", tc.writes-1)
			c := s.dial(t)
			eventually(t, 5*time.Second, func() error {
				v, err := read(t, c, "c", key)
				if err != nil || string(v) != want {
					return fmt.Errorf("read %q, %v; want %q", v, err, want)
				}
				return nil
			})
		})
	}
}

// Different connections are served in parallel and each sees its own writes in order.
func TestStorageConcurrentConnections(t *testing.T) {
	forEachBackend(t, testStorageConcurrentConnections)
}

func testStorageConcurrentConnections(t *testing.T, open backend) {
	s := serve(t, open, 0)
	var wg sync.WaitGroup
	for i := range 8 {
		c := s.dial(t)
		wg.Go(func() {
			ctx := testCtx(t)
			key := fmt.Sprintf("key-%d", i)
			var chans []*rpc.Channel
			for j := range 10 {
				ch, err := c.Call(ctx, "write", "c", key, fmt.Appendf(nil, "%d", j))
				if err != nil {
					t.Error(err)
					return
				}
				chans = append(chans, ch)
			}
			rd, err := c.Call(ctx, "read", "c", key)
			if err != nil {
				t.Error(err)
				return
			}
			for _, ch := range chans {
				if _, err := ch.Get(ctx); err != nil {
					t.Error(err)
				}
			}
			args, err := rd.Get(ctx)
			var v []byte
			if err == nil {
				err = args.Scan(&v)
			}
			if err != nil || string(v) != "9" {
				t.Errorf("%s: read %q, %v", key, v, err)
			}
		})
	}
	wg.Wait()
}

// Run returns after cancel once the work in flight is done; later requests get an error
// reply rather than none, and nothing leaks (serve's leak check runs last).
func TestStorageRunShutdown(t *testing.T) {
	forEachBackend(t, testStorageRunShutdown)
}

func testStorageRunShutdown(t *testing.T, open backend) {
	s := serve(t, open, 0)
	c := s.dial(t)
	ctx := testCtx(t)
	var chans []*rpc.Channel
	for i := range 20 {
		ch, err := c.Call(ctx, "write", "c", "k", fmt.Appendf(nil, "%d", i))
		if err != nil {
			t.Fatal(err)
		}
		chans = append(chans, ch)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	// Every request made before the stop got a reply: a value, or an error if the stop
	// overtook it.
	for i, ch := range chans {
		if _, err := ch.Get(ctx); err != nil {
			var e *rpc.Error
			if !errors.As(err, &e) {
				t.Fatalf("write %d: %v, want a reply", i, err)
			}
		}
	}
	for i := range 3 {
		_, err := call(t, c, "read", "c", "k")
		var e *rpc.Error
		if !errors.As(err, &e) {
			t.Fatalf("read %d after the stop: %v, want an error reply", i, err)
		}
	}
}

// frame encodes [channel, typ, args] with string args as raw and []byte as raw.
func frame(channel, typ uint64, args ...any) []byte {
	b := []byte{0x93}
	b = rpc.AppendUint(b, channel)
	b = rpc.AppendUint(b, typ)
	raw, err := rpc.AppendArgs(nil, args...)
	if err != nil {
		panic(err)
	}
	return append(b, raw...)
}

func zeroTrace() []byte {
	b := []byte{0x93}
	for _, name := range []string{"trace_id", "span_id", "parent_id"} {
		b = append(b, 0x93, 0xc2)
		b = rpc.AppendString(b, name)
		b = rpc.AppendBytes(b, make([]byte, 8))
	}
	return b
}

type rawConn struct {
	t  *testing.T
	c  net.Conn
	fr *rpc.FrameReader
}

func dialRaw(t *testing.T, ep rpc.Endpoint) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", ep.String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second)) // a bound for a broken server
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, fr: rpc.NewFrameReader(c, 0)}
}

func (w *rawConn) send(b []byte) {
	w.t.Helper()
	if _, err := w.c.Write(b); err != nil {
		w.t.Fatalf("write: %v", err)
	}
}

func (w *rawConn) next() rpc.Frame {
	w.t.Helper()
	f, err := w.fr.Next()
	if err != nil {
		w.t.Fatalf("reading a reply: %v", err)
	}
	return f
}

func (w *rawConn) expect(want []byte) {
	w.t.Helper()
	raw, err := w.fr.NextRaw()
	if err != nil {
		w.t.Fatalf("reading a reply: %v", err)
	}
	if !bytes.Equal(raw, want) {
		w.t.Fatalf("reply\n% x\nwant\n% x", raw, want)
	}
}

func (w *rawConn) expectClosed() {
	w.t.Helper()
	raw, err := w.fr.NextRaw()
	if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		w.t.Fatalf("want the connection closed without a reply, got % x, %v", raw, err)
	}
}
