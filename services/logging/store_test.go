package logging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/rpc/rpctest"
)

// errStoreDown is what memStore answers while it is down, as unicorn without a leader.
var errStoreDown = rpc.NewError(rpc.CategoryUnicorn, 10, "unicorn: connection loss: no leader")

// errWatchBroken ends the watches memStore breaks.
var errWatchBroken = errors.New("memstore: watch broken")

// memStore is an in-memory FilterStore: a map of paths with the watch semantics of
// unicorn (a sync, then every change in order). Tests write to it directly to play the
// other hosts, take it down, and break its watches.
type memStore struct {
	mu      sync.Mutex
	nodes   map[string][]byte
	down    bool
	hold    bool // Watch waits for ctx without syncing: this host hears nothing
	watches map[*memWatch]bool
	calls   map[string]int // Create, Remove, Watch: how often each was called
}

type memWatch struct {
	folder string
	events chan FilterEvent // buffered far beyond what a test writes, so writers never block
}

func newMemStore() *memStore {
	return &memStore{nodes: map[string][]byte{}, watches: map[*memWatch]bool{}, calls: map[string]int{}}
}

func (m *memStore) Create(ctx context.Context, path string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls["Create"]++
	if m.down {
		return errStoreDown
	}
	if _, ok := m.nodes[path]; ok {
		return fmt.Errorf("memstore: %s exists", path)
	}
	m.setLocked(path, value)
	return nil
}

func (m *memStore) Remove(ctx context.Context, path string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls["Remove"]++
	if m.down {
		return false, errStoreDown
	}
	_, ok := m.nodes[path]
	if ok {
		m.deleteLocked(path)
	}
	return ok, nil
}

func (m *memStore) Watch(ctx context.Context, folder string, apply func(FilterEvent)) error {
	m.mu.Lock()
	m.calls["Watch"]++
	if m.down {
		m.mu.Unlock()
		return errStoreDown
	}
	if m.hold {
		m.mu.Unlock()
		<-ctx.Done()
		return nil
	}
	w := &memWatch{folder: folder, events: make(chan FilterEvent, 1024)}
	m.watches[w] = true
	snap := FilterEvent{Kind: FilterSync}
	for _, p := range slices.Sorted(maps.Keys(m.nodes)) {
		if isChildOf(folder, p) {
			snap.Nodes = append(snap.Nodes, FilterNode{Path: p, Value: m.nodes[p]})
		}
	}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.watches, w)
		m.mu.Unlock()
	}()
	apply(snap)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.events:
			if !ok {
				return errWatchBroken
			}
			apply(ev)
		}
	}
}

func isChildOf(folder, path string) bool {
	name, ok := strings.CutPrefix(path, folder+"/")
	return ok && name != "" && !strings.Contains(name, "/")
}

// put writes a node as another host (or a stray client) would.
func (m *memStore) put(path string, value []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setLocked(path, value)
}

// del removes a node as another host would.
func (m *memStore) del(path string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.nodes[path]; ok {
		m.deleteLocked(path)
	}
}

// drop removes a node without telling the watches.
func (m *memStore) drop(path string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.nodes, path)
}

func (m *memStore) get(path string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.nodes[path]
	return v, ok
}

func (m *memStore) paths() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.nodes))
}

func (m *memStore) count(call string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls[call]
}

func (m *memStore) watching() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.watches)
}

// setDown takes the store down (every call fails, every watch breaks) or brings it back.
func (m *memStore) setDown(down bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down = down
	if down {
		m.breakLocked()
	}
}

// breakWatches ends every open watch with an error, as a compaction would.
func (m *memStore) breakWatches() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.breakLocked()
}

func (m *memStore) breakLocked() {
	for w := range m.watches {
		close(w.events)
		delete(m.watches, w)
	}
}

func (m *memStore) setLocked(path string, value []byte) {
	m.nodes[path] = value
	m.notifyLocked(FilterEvent{Kind: FilterPut, Path: path, Value: value})
}

func (m *memStore) deleteLocked(path string) {
	delete(m.nodes, path)
	m.notifyLocked(FilterEvent{Kind: FilterDelete, Path: path})
}

func (m *memStore) notifyLocked(ev FilterEvent) {
	for w := range m.watches {
		if isChildOf(w.folder, ev.Path) {
			select {
			case w.events <- ev:
			default:
				panic("memstore: a watch fell 1024 events behind")
			}
		}
	}
}

// watchCounter counts the Watch calls of one service that have not returned.
type watchCounter struct {
	*memStore
	open atomic.Int64
}

func (w *watchCounter) Watch(ctx context.Context, folder string, apply func(FilterEvent)) error {
	w.open.Add(1)
	defer w.open.Add(-1)
	return w.memStore.Watch(ctx, folder, apply)
}

// server is a logging service with a memStore (or none), served on loopback, with a
// fake clock and fast loops.
type server struct {
	s     *Service
	store *memStore
	clk   *fakeClock
	c     *rpc.Conn
}

const testTimeout = 10 * time.Second // only turns a hang into a failure

// serveLogging runs a service with store (nil: none) until the test ends. edit, if set,
// changes the config first.
func serveLogging(t *testing.T, store *memStore, edit func(*Config)) *server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Sinks = nil
	cfg.DefaultFilter = []any{[]any{"severity", uint64(2)}}
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	defaults, _ := cfg.filters()
	clk := &fakeClock{t: epoch}
	var opts []Option
	counted := &watchCounter{memStore: store}
	if store != nil {
		opts = append(opts, WithFilterStore(counted))
	}
	log := testLogger(t)
	s := newService(cfg, log, defaults, MultiSink(), clk.Now, opts...)
	if s.cluster != nil {
		s.cluster.retryMin, s.cluster.retryMax, s.cluster.sweepEvery = time.Millisecond, 10*time.Millisecond, 10*time.Millisecond
	}
	ep := rpctest.Serve(t, s.Dispatcher(), rpc.SessionConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1) // Run's one result
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(testTimeout):
			t.Error("Run did not return after cancel")
		}
		if n := counted.open.Load(); n != 0 {
			t.Errorf("Run returned with %d watches open", n)
		}
	})
	dctx, dcancel := context.WithTimeout(context.Background(), testTimeout)
	defer dcancel()
	c, err := rpc.Dial(dctx, []rpc.Endpoint{ep}, Graph, rpc.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &server{s: s, store: store, clk: clk, c: c}
}

func testLogger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

// call makes a primitive call and returns its value's args, or the error reply.
func (sv *server) call(t *testing.T, method string, args ...any) (rpc.Args, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	ch, err := sv.c.Call(ctx, method, args...)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return ch.Get(ctx)
}

// mustCall is call for a call that must succeed; it scans the value into dst.
func (sv *server) mustCall(t *testing.T, method string, args []any, dst ...any) {
	t.Helper()
	a, err := sv.call(t, method, args...)
	if err != nil {
		t.Fatalf("%s%v: %v", method, args, err)
	}
	if err := a.Scan(dst...); err != nil {
		t.Fatalf("%s%v: scan: %v", method, args, err)
	}
}

func (sv *server) setCluster(t *testing.T, logger string, filter any, ttl uint64) uint64 {
	t.Helper()
	var id uint64
	sv.mustCall(t, "set_cluster_filter", []any{logger, filter, ttl}, &id)
	return id
}

func (sv *server) remove(t *testing.T, id uint64) bool {
	t.Helper()
	var ok bool
	sv.mustCall(t, "remove_filter", []any{id}, &ok)
	return ok
}

func (sv *server) accepts(t *testing.T, severity int, backend string) bool {
	t.Helper()
	var ok bool
	sv.mustCall(t, "emit_ack", []any{severity, backend, "m"}, &ok)
	return ok
}

// listed returns list_filters' entries by id.
func (sv *server) listed(t *testing.T) map[uint64][]any {
	t.Helper()
	var list []any
	sv.mustCall(t, "list_filters", nil, &list)
	out := map[uint64][]any{}
	for _, e := range list {
		f := e.([]any)
		out[f[2].(uint64)] = f
	}
	return out
}

// eventually polls f until it returns nil, failing t with its last error after
// testTimeout.
func eventually(t *testing.T, f func() error) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(testTimeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not after %s: %v", testTimeout, err)
		}
		<-tick.C
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

// stored encodes a node value as another host would write it.
func stored(t *testing.T, v map[string]any) []byte {
	t.Helper()
	b, err := rpc.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// storedFilter is a well-formed node value.
func storedFilter(t *testing.T, id uint64, logger string, filter any, deadline time.Time) []byte {
	t.Helper()
	return stored(t, map[string]any{"filter": filter, "deadline": uint64(deadline.Unix()), "id": id,
		"logger_name": logger, "disposition": uint64(1)})
}

func nodePath(id uint64) string { return fmt.Sprintf("%s/%d", DefaultUnicornPath, id) }
