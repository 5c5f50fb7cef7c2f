package unicorn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// cluster is a single-process Consensus for tests: every host shares one Store, and a
// proposal is applied to it directly, serialized. One host leads at a time; LeaderCall
// runs the leader's handlers. A partitioned host can neither propose nor reach the
// leader, as a host cut off from the quorum.
type cluster struct {
	store *Store

	mu      sync.Mutex
	index   uint64
	leader  *host
	changed chan struct{}
}

// host is one host's view of the cluster: it implements Consensus.
type host struct {
	c           *cluster
	svc         *Service
	partitioned atomic.Bool
	// noLeaderCalls fails LeaderCall (keepalives) while proposals still go through: a
	// link too slow for keepalives to arrive in time.
	noLeaderCalls atomic.Bool
}

var errPartitioned = errors.New("test: host is partitioned")

func newCluster(t testing.TB, cfg Config) *cluster {
	t.Helper()
	s, err := NewStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{store: s, changed: make(chan struct{})}
}

func (h *host) Propose(ctx context.Context, cmd []byte) ([]byte, error) {
	if err := h.reachable(ctx); err != nil {
		return nil, err
	}
	c := h.c
	c.mu.Lock()
	defer c.mu.Unlock()
	c.index++
	return c.store.Apply(c.index, cmd), nil
}

func (h *host) reachable(ctx context.Context) error {
	if h.partitioned.Load() {
		return errPartitioned
	}
	return ctx.Err()
}

func (h *host) ReadIndex(ctx context.Context, linearizable bool) (uint64, error) {
	if err := h.reachable(ctx); err != nil {
		return 0, err
	}
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	return h.c.index, nil
}

func (h *host) WaitApplied(ctx context.Context, index uint64) error {
	if h.c.store.AppliedIndex() < index {
		return fmt.Errorf("test: index %d not applied", index)
	}
	return ctx.Err()
}

func (h *host) Leadership() (bool, <-chan struct{}) {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	return h.c.leader == h, h.c.changed
}

func (h *host) LeaderCall(ctx context.Context, method string, payload []byte) ([]byte, error) {
	if err := h.reachable(ctx); err != nil {
		return nil, err
	}
	if h.noLeaderCalls.Load() {
		return nil, errPartitioned
	}
	h.c.mu.Lock()
	leader := h.c.leader
	h.c.mu.Unlock()
	if leader == nil {
		return nil, errors.New("test: no leader")
	}
	handler := leader.svc.LeaderHandlers()[method]
	if handler == nil {
		return nil, fmt.Errorf("test: no leader handler %q", method)
	}
	return handler(ctx, payload)
}

// setLeader makes h the leader (nil: none).
func (c *cluster) setLeader(h *host) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leader = h
	close(c.changed)
	c.changed = make(chan struct{})
}

// addHost starts a Service on the cluster; the first one leads. The service stops when
// the test ends (or when the returned stop is called).
func (c *cluster) addHost(t testing.TB, cfg Config) (*host, func()) {
	t.Helper()
	h := &host{c: c}
	svc, err := New(cfg, c.store, h, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	h.svc = svc
	c.mu.Lock()
	first := c.leader == nil
	c.mu.Unlock()
	if first {
		c.setLeader(h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1) // Run's result, read once by stop
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return h, stop
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// eventually polls cond every few milliseconds until it holds, failing t after timeout.
// Under synctest the time is virtual, so this costs nothing.
func eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
