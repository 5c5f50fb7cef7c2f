// Package testcluster runs N cocaine daemons in one test process, each on its own
// loopback address (127.0.0.11, .12, ...) with real sockets and real Raft on disk,
// their Raft traffic going through a fault-injecting network.
//
//	c := testcluster.New(t, testcluster.Options{Nodes: 3}) // stopped when the test ends
//	ld := c.WaitLeader(t)
//	c.Net.Partition([]string{ld.Name}, c.Others(ld))      // cut the leader off; c.Net.Heal()
//	c.Node(1).Kill(); c.Node(1).Restart()                 // a crash; same data dir, same ports
//	conn := c.Node(0).Dial(t, "unicorn")                  // a client of node 0's unicorn
//
// Node 0 bootstraps the cluster; the others join it through its locator, as
// `cocaine run --join` does. Kill is a crash; Stop is a shutdown that does not leave
// the cluster (the daemon still revokes its leases on the way out).
package testcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cocaine/cocaine/internal/daemon"
	"github.com/cocaine/cocaine/internal/faultnet"
	"github.com/cocaine/cocaine/node/isolate/process"
	"github.com/cocaine/cocaine/rpc"
)

// Options shape a cluster.
type Options struct {
	// Nodes is how many hosts to start (at least 1).
	Nodes int
	// Configure, if set, edits each host's config before its first start.
	Configure func(i int, cfg *daemon.Config)
	// LogLevel of the daemons' logs, which go to the test's output (Warn if zero).
	LogLevel slog.Level
}

// Cluster is a running test cluster.
type Cluster struct {
	t     testing.TB
	Net   *faultnet.Network
	nodes []*Node
	level slog.Level
}

// Node is one host of the cluster.
type Node struct {
	c     *Cluster
	Index int
	Name  string // its name in Net: "h0", "h1", ...
	IP    string
	cfg   daemon.Config

	raftPort int

	// mu guards the running daemon: tests stop and restart hosts while clients ask
	// which ones run.
	mu     sync.Mutex
	d      *daemon.Daemon
	cancel context.CancelFunc
	done   chan error // Run's result
}

// New starts a cluster and registers its stop with t.Cleanup.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Nodes < 1 {
		t.Fatal("testcluster: at least one node")
	}
	level := opts.LogLevel
	if level == 0 {
		level = slog.LevelWarn
	}
	c := &Cluster{t: t, Net: faultnet.New(), level: level}
	// The hosts' worker cgroups live under a root of this cluster's own, removed by
	// name once every host stopped (cleanups run last in, first out).
	var rnd [4]byte
	rand.Read(rnd[:])
	cgroupRoot := "/cocaine-tc-" + hex.EncodeToString(rnd[:])
	t.Cleanup(func() { process.RemoveHierarchy(cgroupRoot) })
	t.Cleanup(c.Close)
	for i := range opts.Nodes {
		n := &Node{c: c, Index: i, Name: "h" + strconv.Itoa(i), IP: fmt.Sprintf("127.0.0.%d", 11+i)}
		n.cfg = nodeConfig(t, n.IP)
		n.cfg.Node.CgroupRoot = cgroupRoot
		if i > 0 {
			n.cfg.Raft.Join = []string{c.nodes[0].Locator()[0].String()}
		}
		if opts.Configure != nil {
			opts.Configure(i, &n.cfg)
		}
		c.nodes = append(c.nodes, n)
		n.start()
	}
	return c
}

// nodeConfig is a host on ip with kernel-chosen ports and timeouts short enough for
// tests on a loaded 2-core machine.
func nodeConfig(t testing.TB, ip string) daemon.Config {
	cfg := daemon.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Network.Endpoint = ip
	cfg.Network.Pinned = map[string]int{"locator": 0}
	cfg.Logging.Sinks = nil
	leave := false
	cfg.Raft.LeaveOnShutdown = &leave
	cfg.Raft.HeartbeatTimeout = daemon.Duration(200 * time.Millisecond)
	cfg.Raft.ElectionTimeout = daemon.Duration(200 * time.Millisecond)
	cfg.Raft.LeaderLeaseTimeout = daemon.Duration(100 * time.Millisecond)
	cfg.Raft.DeadServerTimeout = daemon.Duration(10 * time.Second)
	cfg.Unicorn.HostLeaseTTL = daemon.Duration(2 * time.Second)
	cfg.Unicorn.SessionLeaseTTL = daemon.Duration(2 * time.Second)
	cfg.Unicorn.RequestTimeout = daemon.Duration(5 * time.Second)
	return cfg
}

// Node returns host i.
func (c *Cluster) Node(i int) *Node { return c.nodes[i] }

// Nodes returns every host.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Names returns the names of the given hosts.
func Names(ns ...*Node) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Name
	}
	return out
}

// Others returns the names of every host but those given.
func (c *Cluster) Others(ns ...*Node) []string {
	var out []string
	for _, n := range c.nodes {
		skip := false
		for _, x := range ns {
			skip = skip || x == n
		}
		if !skip {
			out = append(out, n.Name)
		}
	}
	return out
}

// Close stops every running host.
func (c *Cluster) Close() {
	for _, n := range c.nodes {
		n.Stop()
	}
}

// WaitLeader waits until exactly one running host leads and every running host that
// can reach it agrees, and returns it.
func (c *Cluster) WaitLeader(t testing.TB) *Node {
	t.Helper()
	var leader *Node
	Eventually(t, 30*time.Second, func() error {
		leader = nil
		for _, n := range c.nodes {
			if !n.Running() {
				continue
			}
			if ok, _ := n.Daemon().Raft().Leadership(); ok {
				if leader != nil {
					return fmt.Errorf("two leaders: %s and %s", leader.Name, n.Name)
				}
				leader = n
			}
		}
		if leader == nil {
			return fmt.Errorf("no leader")
		}
		return nil
	})
	return leader
}

func (n *Node) start() {
	t := n.c.t
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(n.IP, strconv.Itoa(n.raftPort)))
	if err != nil {
		t.Fatalf("%s: raft listener: %v", n.Name, err)
	}
	n.raftPort = ln.Addr().(*net.TCPAddr).Port
	n.c.Net.Register(n.Name, ln.Addr().String())
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: n.c.level})).With("host", n.Name)
	d, err := daemon.New(n.cfg, log)
	if err != nil {
		ln.Close()
		t.Fatalf("%s: %v", n.Name, err)
	}
	d.RaftListener = ln
	d.RaftDial = n.c.Net.Dialer(n.Name)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1) // Run's one result
	go func() { done <- d.Run(ctx) }()
	select {
	case <-d.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("%s stopped before it was ready: %v", n.Name, err)
	case <-time.After(60 * time.Second):
		t.Fatalf("%s not ready", n.Name)
	}
	// A restart binds the same ports.
	pinned := map[string]int{}
	for _, name := range []string{"locator", "logging", "storage", "unicorn", "cluster", "node", "blobs"} {
		if eps := d.Endpoint(name); len(eps) > 0 {
			pinned[name] = int(eps[0].Port)
		}
	}
	n.cfg.Network.Pinned = pinned
	n.mu.Lock()
	n.d, n.cancel, n.done = d, cancel, done
	n.mu.Unlock()
}

// Running reports whether the host runs.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cancel != nil
}

// Daemon is the host's daemon (the last one started, if it is stopped).
func (n *Node) Daemon() *daemon.Daemon {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.d
}

// Stop shuts the host down without leaving the cluster. Idempotent.
func (n *Node) Stop() {
	n.mu.Lock()
	cancel, done := n.cancel, n.done
	n.cancel = nil
	n.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			n.c.t.Errorf("%s: run: %v", n.Name, err)
		}
	case <-time.After(60 * time.Second):
		n.c.t.Errorf("%s: Run did not return", n.Name)
	}
}

// Kill stops the host as a crash does: it is cut off first, so nothing it would say on
// its way out (lease revocations, a leave) reaches the others. Restart reconnects it.
func (n *Node) Kill() {
	if !n.Running() {
		return
	}
	n.c.Net.Isolate(n.Name)
	n.Stop()
}

// Restart starts a stopped host again with its data dir and ports, its links healed.
func (n *Node) Restart() {
	n.Stop()
	n.c.Net.Reconnect(n.Name)
	n.start()
}

// Locator is the host's locator endpoint.
func (n *Node) Locator() []rpc.Endpoint { return n.Daemon().Endpoint("locator") }

// Dial connects to one of the host's services (by its well-known graph, resolved
// through the host's locator). The connection is closed when the test ends.
func (n *Node) Dial(t testing.TB, service string) *rpc.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := rpc.Service(ctx, n.Locator(), service, rpc.DialConfig{})
	if err != nil {
		t.Fatalf("%s: connect to %s: %v", n.Name, service, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Eventually polls f every 20ms until it returns nil, or fails t with f's last error
// after timeout. It is the one way tests wait for a condition.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not after %s: %v", timeout, err)
		}
		<-tick.C
	}
}
