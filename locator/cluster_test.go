package locator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// memStore is an in-memory ClusterStore shared by the Services of one test: a map of
// paths with the lease each is bound to, and watchers that get every change.
type memStore struct {
	mu       sync.Mutex
	nodes    map[string]memNode
	watchers map[chan ClusterEvent]string // → prefix
	leases   map[int64]chan struct{}      // lost channels
	next     int64
}

type memNode struct {
	value []byte
	lease int64
}

func newMemStore() *memStore {
	return &memStore{nodes: map[string]memNode{}, watchers: map[chan ClusterEvent]string{}, leases: map[int64]chan struct{}{}}
}

func (m *memStore) HostLease(ctx context.Context) (int64, <-chan struct{}, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.next++
	lost := make(chan struct{})
	m.leases[m.next] = lost
	return m.next, lost, nil
}

// expire ends a lease: its nodes go, its owner is told.
func (m *memStore) expire(lease int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p, n := range m.nodes {
		if n.lease == lease {
			delete(m.nodes, p)
			m.notifyLocked(ClusterEvent{Path: p, Deleted: true})
		}
	}
	if ch, ok := m.leases[lease]; ok {
		close(ch)
		delete(m.leases, lease)
	}
}

func (m *memStore) Publish(ctx context.Context, path string, value []byte, lease int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.leases[lease]; !ok {
		return errors.New("memstore: no such lease")
	}
	m.nodes[path] = memNode{value: value, lease: lease}
	m.notifyLocked(ClusterEvent{Path: path, Value: value})
	return nil
}

func (m *memStore) Unpublish(ctx context.Context, path string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.nodes[path]; ok {
		delete(m.nodes, path)
		m.notifyLocked(ClusterEvent{Path: path, Deleted: true})
	}
	return nil
}

func (m *memStore) notifyLocked(ev ClusterEvent) {
	for ch, prefix := range m.watchers {
		if strings.HasPrefix(ev.Path, prefix+"/") {
			ch <- ev
		}
	}
}

func (m *memStore) Watch(ctx context.Context, prefix string, apply func(ClusterEvent)) error {
	// Generous room: the test's writes are few, and Publish must not block on a reader.
	ch := make(chan ClusterEvent, 1024)
	m.mu.Lock()
	var sync ClusterEvent
	sync.Sync = true
	for p, n := range m.nodes {
		if strings.HasPrefix(p, prefix+"/") {
			sync.Nodes = append(sync.Nodes, ClusterNode{Path: p, Value: n.value})
		}
	}
	m.watchers[ch] = prefix
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.watchers, ch)
		m.mu.Unlock()
	}()
	apply(sync)
	for {
		select {
		case ev := <-ch:
			apply(ev)
		case <-ctx.Done():
			return nil
		}
	}
}

func (m *memStore) paths() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for p := range m.nodes {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// host is one Service of a test "cluster" over a memStore.
type host struct {
	s      *Service
	reg    *Registry
	cancel context.CancelFunc
	done   chan error
}

func startHost(t *testing.T, store ClusterStore, uuid string, loc rpc.Endpoint, cfg Config) *host {
	t.Helper()
	reg := NewRegistry()
	cfg.UUID = uuid
	cfg.AnnounceLoopback = true
	s, err := New(cfg, reg, nil, nil, WithCluster(store, func() []rpc.Endpoint { return []rpc.Endpoint{loc} }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &host{s: s, reg: reg, cancel: cancel, done: make(chan error, 1)} // Run's result
	go func() { h.done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-h.done; err != nil {
			t.Error(err)
		}
	})
	return h
}

func waitFor(t *testing.T, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func resolvedEndpoints(t *testing.T, raw rpc.Raw) []rpc.Endpoint {
	t.Helper()
	r, err := rpc.DecodeResolve(rpc.Args(raw))
	if err != nil {
		t.Fatal(err)
	}
	return r.Endpoints
}

var graph = rpc.ServiceGraph(1, rpc.Method{Name: "ping", Dispatch: rpc.Terminal, Upstream: rpc.Primitive})

func TestClusterAnnounceAndResolve(t *testing.T) {
	store := newMemStore()
	a := startHost(t, store, "host-a", rpc.Endpoint{Host: "10.0.0.1", Port: 10053}, Config{})
	b := startHost(t, store, "host-b", rpc.Endpoint{Host: "10.0.0.2", Port: 10053}, Config{})
	epA := rpc.Endpoint{Host: "10.0.0.1", Port: 2000}
	epB := rpc.Endpoint{Host: "10.0.0.2", Port: 3000}
	withdrawB, err := b.reg.Expose(Entry{Name: "app", Endpoints: []rpc.Endpoint{epB}, Version: 1, Graph: graph, Weight: 4})
	if err != nil {
		t.Fatal(err)
	}
	// Restricted services and the locator itself are never announced.
	b.reg.Expose(Entry{Name: "secret", Endpoints: []rpc.Endpoint{epB}, Version: 1, Graph: graph, Restricted: true})
	b.reg.Expose(Entry{Name: Name, Endpoints: []rpc.Endpoint{epB}, Version: 3, Graph: rpc.LocatorGraph})
	waitFor(t, func() error {
		raw, err := a.s.Resolve("app")
		if err != nil {
			return err
		}
		if eps := resolvedEndpoints(t, raw); !slices.Equal(eps, []rpc.Endpoint{epB}) {
			return fmt.Errorf("a resolves app to %v", eps)
		}
		return nil
	})
	if _, err := a.s.Resolve("secret"); !errors.Is(err, rpc.ErrServiceUnavailable) {
		t.Errorf("a restricted service resolves elsewhere: %v", err)
	}
	if hosts := a.s.index.cluster(); len(hosts) != 1 || hosts["host-b"][0].Port != 10053 {
		t.Errorf("a's cluster: %v", hosts)
	}
	// Local first.
	a.reg.Expose(Entry{Name: "app", Endpoints: []rpc.Endpoint{epA}, Version: 1, Graph: graph})
	raw, err := a.s.Resolve("app")
	if err != nil {
		t.Fatal(err)
	}
	if eps := resolvedEndpoints(t, raw); !slices.Equal(eps, []rpc.Endpoint{epA, epB}) {
		t.Errorf("a resolves app to %v, want its own first", eps)
	}
	// Another protocol version elsewhere is not mixed in.
	c := startHost(t, store, "host-c", rpc.Endpoint{Host: "10.0.0.3", Port: 10053}, Config{})
	v2 := rpc.ServiceGraph(2, rpc.Method{Name: "ping", Dispatch: rpc.Terminal, Upstream: rpc.Primitive})
	c.reg.Expose(Entry{Name: "app", Endpoints: []rpc.Endpoint{{Host: "10.0.0.3", Port: 4000}}, Version: 2, Graph: v2})
	waitFor(t, func() error {
		if n := len(a.s.index.lookup("app")); n != 2 {
			return fmt.Errorf("a knows %d remote apps", n)
		}
		return nil
	})
	raw, _ = a.s.Resolve("app")
	if eps := resolvedEndpoints(t, raw); !slices.Equal(eps, []rpc.Endpoint{epA, epB}) {
		t.Errorf("a resolves app to %v: another version was mixed in", eps)
	}
	// Withdrawn → gone elsewhere.
	withdrawB()
	waitFor(t, func() error {
		for _, r := range a.s.index.lookup("app") {
			if r.host == "host-b" {
				return errors.New("b's app still known to a")
			}
		}
		return nil
	})
}

func TestClusterLeaseLossReannounces(t *testing.T) {
	store := newMemStore()
	a := startHost(t, store, "host-a", rpc.Endpoint{Host: "10.0.0.1", Port: 10053}, Config{})
	a.reg.Expose(Entry{Name: "svc", Endpoints: []rpc.Endpoint{{Host: "10.0.0.1", Port: 5}}, Version: 1, Graph: graph})
	want := []string{"/cocaine/locator/hosts/host-a", "/cocaine/locator/services/svc/host-a"}
	waitFor(t, func() error {
		if got := store.paths(); !slices.Equal(got, want) {
			return fmt.Errorf("store holds %v", got)
		}
		return nil
	})
	store.expire(1) // the host was cut off: its announces went with its lease
	waitFor(t, func() error {
		if got := store.paths(); !slices.Equal(got, want) {
			return fmt.Errorf("after a lost lease the store holds %v", got)
		}
		return nil
	})
}

func TestAnnounceable(t *testing.T) {
	eps := []rpc.Endpoint{{Host: "0.0.0.0", Port: 1}, {Host: "::", Port: 1}, {Host: "127.0.0.1", Port: 2}, {Host: "::1", Port: 2}, {Host: "10.1.2.3", Port: 3}, {Host: "fe80::1", Port: 4}}
	if got := announceable(eps, false); !slices.Equal(got, []rpc.Endpoint{{Host: "10.1.2.3", Port: 3}, {Host: "fe80::1", Port: 4}}) {
		t.Errorf("announceable = %v", got)
	}
	if got := announceable(eps, true); len(got) != 4 {
		t.Errorf("with loopback allowed: %v", got)
	}
}

func TestAnnounceCodec(t *testing.T) {
	e := &Entry{Name: "x", Version: 7, Graph: graph, Weight: 3}
	e.graphRaw, _ = graph.AppendMsgpack(nil)
	eps := []rpc.Endpoint{{Host: "10.0.0.1", Port: 9}}
	r, err := decodeAnnounce("h", encodeAnnounce(e, eps))
	if err != nil {
		t.Fatal(err)
	}
	if r.version != 7 || r.weight != 3 || !slices.Equal(r.endpoints, eps) || string(r.graph) != string(e.graphRaw) {
		t.Errorf("round trip: %+v", r)
	}
	nonNative := &Entry{Name: "y"}
	if r, err := decodeAnnounce("h", encodeAnnounce(nonNative, eps)); err != nil || r.graph != nil || r.weight != 1 {
		t.Errorf("non-native round trip: %+v %v", r, err)
	}
	for _, tc := range []struct {
		name string
		v    any
	}{
		{"not a map", []any{1}},
		{"no endpoints", map[string]any{"version": uint64(1)}},
		{"bad endpoints", map[string]any{"endpoints": "x"}},
		{"bad graph", map[string]any{"endpoints": []any{[]any{"10.0.0.1", uint64(1)}}, "graph": "\x01"}},
		{"bad version", map[string]any{"endpoints": []any{[]any{"10.0.0.1", uint64(1)}}, "version": "1"}},
	} {
		b, err := rpc.Marshal(tc.v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeAnnounce("h", b); !errors.Is(err, errAnnounce) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// TestWeightedOrder: a remote comes first with a probability proportional to its weight
// (a statistical bound: 6 standard deviations, so the test fails by chance about once in
// 10^9 runs).
func TestWeightedOrder(t *testing.T) {
	rs := []*remote{{host: "a", weight: 1}, {host: "b", weight: 3}, {host: "c", weight: 6}}
	const n = 20000
	first := map[string]int{}
	for range n {
		first[weightedOrder(rs)[0].host]++
	}
	for _, r := range rs {
		p := float64(r.weight) / 10
		mean, sd := n*p, math.Sqrt(n*p*(1-p))
		if got := float64(first[r.host]); math.Abs(got-mean) > 6*sd {
			t.Errorf("%s first %v times in %d, expected %.0f ± %.0f", r.host, got, n, mean, 6*sd)
		}
	}
}

// FuzzAnnounce: the decoder of other hosts' announces never panics, and what it accepts
// has endpoints and a graph that decodes.
func FuzzAnnounce(f *testing.F) {
	e := &Entry{Name: "x", Version: 1, Graph: graph, Weight: 2}
	e.graphRaw, _ = graph.AppendMsgpack(nil)
	f.Add(encodeAnnounce(e, []rpc.Endpoint{{Host: "10.0.0.1", Port: 1}}))
	f.Add(encodeAnnounce(&Entry{Name: "y"}, []rpc.Endpoint{{Host: "::1", Port: 2}}))
	f.Add(encodeHost([]rpc.Endpoint{{Host: "10.0.0.1", Port: 10053}}))
	f.Add([]byte{0x81, 0xa9, 'e', 'n', 'd', 'p', 'o', 'i', 'n', 't', 's', 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeAnnounce("h", b)
		if err == nil && len(r.endpoints) == 0 {
			t.Fatal("accepted an announce without endpoints")
		}
		decodeHost(b)
	})
}
