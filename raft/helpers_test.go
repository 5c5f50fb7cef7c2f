package raft

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// kv is a test FSM: commands "set k v" or "del k"; the result is the previous value.
type kv struct {
	mu      sync.Mutex
	m       map[string]string
	applied []uint64
}

func newKV() *kv { return &kv{m: map[string]string{}} }

func (s *kv) Apply(index uint64, cmd []byte) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied = append(s.applied, index)
	f := strings.SplitN(string(cmd), " ", 3)
	var prev string
	switch {
	case len(f) == 3 && f[0] == "set":
		prev = s.m[f[1]]
		s.m[f[1]] = f[2]
	case len(f) == 2 && f[0] == "del":
		prev = s.m[f[1]]
		delete(s.m, f[1])
	default:
		return []byte("bad command")
	}
	return []byte(prev)
}

func (s *kv) get(k string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	return v, ok
}

func (s *kv) Snapshot() (Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := json.Marshal(s.m)
	return kvSnap(b), err
}

type kvSnap []byte

func (b kvSnap) Persist(w io.Writer) error { _, err := w.Write(b); return err }
func (kvSnap) Release()                    {}

func (s *kv) Restore(r io.Reader, _ uint64) error {
	var m map[string]string
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		return err
	}
	s.mu.Lock()
	s.m = m
	s.mu.Unlock()
	return nil
}

// testNode is one Node of a test cluster with its KV and lifecycle.
type testNode struct {
	t      *testing.T
	cfg    Config
	kv     *kv
	n      *Node
	cancel context.CancelFunc
	done   chan error
}

// fastConfig has timeouts short enough for tests on a loaded 2-core machine.
func fastConfig(t *testing.T, id string) Config {
	cfg := DefaultConfig()
	cfg.ID = id
	cfg.Dir = t.TempDir()
	cfg.Bind = "127.0.0.1:0"
	cfg.HeartbeatTimeout = 200 * time.Millisecond
	cfg.ElectionTimeout = 200 * time.Millisecond
	cfg.LeaderLeaseTimeout = 100 * time.Millisecond
	cfg.DeadServerTimeout = 2 * time.Second
	cfg.LeaveOnShutdown = false
	return cfg
}

func testLogger(t *testing.T, id string) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", id)
}

// start runs a node with cfg. A fixed port is reused on restart.
func start(t *testing.T, cfg Config) *testNode {
	t.Helper()
	tn := &testNode{t: t, cfg: cfg, kv: newKV()}
	tn.run()
	t.Cleanup(tn.stop)
	return tn
}

func (tn *testNode) run() {
	t := tn.t
	t.Helper()
	if tn.cfg.Listener == nil {
		ln, err := net.Listen("tcp", tn.cfg.Bind)
		if err != nil {
			t.Fatal(err)
		}
		tn.cfg.Bind = ln.Addr().String() // a restart binds the same port
		tn.cfg.Listener = ln
	}
	n, err := New(tn.cfg, tn.kv, testLogger(t, tn.cfg.ID))
	if err != nil {
		t.Fatal(err)
	}
	tn.cfg.Listener = nil
	tn.n = n
	ctx, cancel := context.WithCancel(context.Background())
	tn.cancel = cancel
	tn.done = make(chan error, 1) // Run's one result
	go func() { tn.done <- n.Run(ctx) }()
	select {
	case <-n.Started():
	case err := <-tn.done:
		tn.done <- err
		t.Fatalf("node %s: %v", tn.cfg.ID, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("node %s did not start", tn.cfg.ID)
	}
}

// stop stops the node (idempotent) and checks Run's result.
func (tn *testNode) stop() {
	if tn.cancel == nil {
		return
	}
	tn.cancel()
	tn.cancel = nil
	select {
	case err := <-tn.done:
		if err != nil {
			tn.t.Errorf("node %s: run: %v", tn.cfg.ID, err)
		}
	case <-time.After(30 * time.Second):
		tn.t.Errorf("node %s: Run did not return", tn.cfg.ID)
	}
}

// restart stops and starts the node again with the same data dir and port.
func (tn *testNode) restart() {
	tn.stop()
	tn.kv = newKV()
	tn.run()
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls f until it returns nil, or fails the test with f's last error.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cluster starts n nodes: the first bootstraps, the others join through it.
func cluster(t *testing.T, n int, configure func(i int, cfg *Config)) []*testNode {
	t.Helper()
	var nodes []*testNode
	for i := range n {
		cfg := fastConfig(t, fmt.Sprintf("n%d", i))
		cfg.Bootstrap = i == 0
		if configure != nil {
			configure(i, &cfg)
		}
		tn := start(t, cfg)
		nodes = append(nodes, tn)
		if i == 0 {
			waitLeader(t, nodes[:1])
			continue
		}
		if err := nodes[0].n.Join(ctxFor(t, 20*time.Second), cfg.ID, tn.n.Addr()); err != nil {
			t.Fatalf("join %s: %v", cfg.ID, err)
		}
	}
	return nodes
}

// waitLeader waits until one node of nodes leads, ready, and every other one knows it.
func waitLeader(t *testing.T, nodes []*testNode) *testNode {
	t.Helper()
	var leader *testNode
	eventually(t, 20*time.Second, func() error {
		leader = nil
		for _, tn := range nodes {
			if ok, _ := tn.n.Leadership(); ok {
				if leader != nil {
					return fmt.Errorf("two leaders: %s and %s", leader.cfg.ID, tn.cfg.ID)
				}
				leader = tn
			}
		}
		if leader == nil {
			return fmt.Errorf("no leader")
		}
		for _, tn := range nodes {
			if id, _ := tn.n.Leader(); id != leader.cfg.ID {
				return fmt.Errorf("%s thinks the leader is %q, not %s", tn.cfg.ID, id, leader.cfg.ID)
			}
		}
		return nil
	})
	return leader
}

func members(t *testing.T, tn *testNode) []Member {
	t.Helper()
	ms, err := tn.n.Members(ctxFor(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return ms
}

func voters(ms []Member) []string {
	var out []string
	for _, m := range ms {
		if m.Voter {
			out = append(out, m.ID)
		}
	}
	return out
}

func set(t *testing.T, tn *testNode, k, v string) string {
	t.Helper()
	out, err := tn.n.Propose(ctxFor(t, 10*time.Second), []byte("set "+k+" "+v))
	if err != nil {
		t.Fatalf("set %s on %s: %v", k, tn.cfg.ID, err)
	}
	return string(out)
}

func equalBytes(a, b []byte) bool { return bytes.Equal(a, b) }

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
