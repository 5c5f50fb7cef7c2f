package unicorn

import (
	"context"
	"errors"
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/cocaine/cocaine/raft"
	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/rpc/rpctest"
)

// raftHost is a one-server raft cluster driving a Store, wired as the daemon wires it:
// the store is a raft.Mux part, the service runs over the part's Sub, and the leader
// handlers are registered with the node.
type raftHost struct {
	store *Store
	node  *raft.Node
	svc   *Service
	stop  func()
}

const unicornTag = 'u'

func startRaftHost(t *testing.T, dir string, ln net.Listener, bootstrap bool) *raftHost {
	t.Helper()
	store, err := NewStore(Config{})
	if err != nil {
		t.Fatal(err)
	}
	mux := raft.NewMux()
	if err := mux.Register(unicornTag, store); err != nil {
		t.Fatal(err)
	}
	cfg := raft.DefaultConfig()
	cfg.ID, cfg.Dir, cfg.Listener, cfg.Bootstrap, cfg.Voters = "n1", dir, ln, bootstrap, 1
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	cfg.LeaveOnShutdown = false
	node, err := raft.New(cfg, mux, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Config{}, store, node.Sub(unicornTag), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	for name, h := range svc.LeaderHandlers() {
		node.HandleLeader(name, raft.LeaderHandler(h))
	}
	ctx, cancel := context.WithCancel(context.Background())
	nodeDone := make(chan error, 1) // Run's result, read once by stop
	go func() { nodeDone <- node.Run(ctx) }()
	select {
	case <-node.Started():
	case err := <-nodeDone:
		cancel()
		t.Fatalf("raft: %v", err)
	}
	eventually(t, 10*time.Second, func() error {
		if leader, _ := node.Leadership(); !leader {
			return errors.New("no leader yet")
		}
		return nil
	})
	svcCtx, svcCancel := context.WithCancel(context.Background())
	svcDone := make(chan error, 1) // Run's result, read once by stop
	go func() { svcDone <- svc.Run(svcCtx) }()
	h := &raftHost{store: store, node: node, svc: svc}
	stopped := false
	h.stop = func() {
		if stopped {
			return
		}
		stopped = true
		svcCancel()
		if err := <-svcDone; err != nil {
			t.Errorf("unicorn: %v", err)
		}
		cancel()
		if err := <-nodeDone; err != nil {
			t.Errorf("raft: %v", err)
		}
	}
	t.Cleanup(h.stop)
	return h
}

func TestOverRaft(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a raft server")
	}
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	h := startRaftHost(t, dir, ln, true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ep := rpctest.Serve(t, h.svc.Dispatcher(), rpc.SessionConfig{})
	conn, err := rpc.Dial(ctx, []rpc.Endpoint{ep}, Graph, rpc.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	must := func(method string, a ...any) []any {
		t.Helper()
		v, err := call(ctx, t, conn, method, a...)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		return v
	}
	must("create", "/cfg/app", map[string]any{"workers": 4})
	if got := must("put", "/cfg/app", map[string]any{"workers": 8}, 0); !reflect.DeepEqual(got, list(true, list(map[string]any{"workers": uint64(8)}, uint64(1)))) {
		t.Fatalf("put = %v", got)
	}
	lock, _ := conn.Call(ctx, "lock", "/locks/deploy")
	mustRecv(ctx, t, lock, list(true))
	must("create", "/hosts/me", "ephemeral", true)
	id, lost, err := h.svc.HostLease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.svc.Create(ctx, "/services/me", []byte{0xc0}, CreateOptions{Ephemeral: true}); err != nil {
		t.Fatal(err)
	}
	rev := h.store.Revision()
	select {
	case <-lost:
		t.Fatalf("host lease %d lost", id)
	default:
	}
	conn.Close()

	// a restart replays the log (or a snapshot) into a fresh store: the same state, the
	// same history; the ephemeral nodes went with the leases revoked on the way out
	h.stop()
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot bind %s again: %v", addr, err)
	}
	h2 := startRaftHost(t, dir, ln2, false)
	eventually(t, 10*time.Second, func() error {
		if h2.store.Revision() < rev {
			return errors.New("not replayed yet")
		}
		return nil
	})
	v, ver, err := h2.svc.Get(ctx, "/cfg/app", Default)
	if err != nil || ver != 1 || string(v) != "\x81\xa7workers\x08" {
		t.Fatalf("after restart: %q, %d, %v", v, ver, err)
	}
	for _, p := range []string{"/hosts/me", "/services/me"} {
		if _, ok := h2.store.Node(p); ok {
			t.Errorf("%s outlived its lease", p)
		}
	}
	if _, names, _, _ := h2.store.Children("/locks/deploy"); len(names) != 0 {
		t.Errorf("lock nodes left: %v", names)
	}
	_, events, err := h2.svc.Watch(ctx, "/cfg", WatchOptions{From: 0, Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	r := <-events
	if r.Err != nil || len(r.Events) < 3 || r.Events[0].Path != "/cfg" || r.Events[2].Kind != EventPut {
		t.Fatalf("history after restart: %+v", r)
	}
}
