package raft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

func TestSingleNodeBootstrapAndRestart(t *testing.T) {
	cfg := fastConfig(t, "solo")
	cfg.Bootstrap = true
	cfg.SnapshotThreshold = 50 // so the restart goes through a snapshot and the log after it
	cfg.TrailingLogs = 10
	cfg.SnapshotInterval = 50 * time.Millisecond
	tn := start(t, cfg)
	waitLeader(t, []*testNode{tn})
	for i := range 200 {
		if prev := set(t, tn, "k", strconv.Itoa(i)); i > 0 && prev != strconv.Itoa(i-1) {
			t.Fatalf("set %d: previous value %q", i, prev)
		}
	}
	eventually(t, 10*time.Second, func() error {
		list, err := tn.n.snaps.List()
		if err != nil || len(list) == 0 {
			return fmt.Errorf("no snapshot yet (%v)", err)
		}
		return nil
	})
	set(t, tn, "after", "snapshot")
	tn.restart()
	waitLeader(t, []*testNode{tn})
	catchUp(t, tn, false)
	if v, _ := tn.kv.get("k"); v != "199" {
		t.Fatalf("after restart k = %q, want 199", v)
	}
	if v, _ := tn.kv.get("after"); v != "snapshot" {
		t.Fatalf("after restart the entry after the snapshot is lost: %q", v)
	}
}

// catchUp waits until tn has applied every write acknowledged before the call: its read
// index (linearizable: confirmed by a quorum), then WaitApplied.
func catchUp(t *testing.T, tn *testNode, lin bool) {
	t.Helper()
	idx, err := tn.n.ReadIndex(ctxFor(t, 10*time.Second), lin)
	if err != nil {
		t.Fatalf("read index on %s: %v", tn.cfg.ID, err)
	}
	if err := tn.n.WaitApplied(ctxFor(t, 20*time.Second), idx); err != nil {
		t.Fatalf("%s does not apply up to its read index %d: %v", tn.cfg.ID, idx, err)
	}
}

func TestJoinVotersThenNonvoters(t *testing.T) {
	nodes := cluster(t, 4, nil)
	leader := waitLeader(t, nodes)
	ms := members(t, nodes[3])
	if got := voters(ms); !slices.Equal(got, []string{"n0", "n1", "n2"}) {
		t.Fatalf("voters %v, want the first three", got)
	}
	if len(ms) != 4 {
		t.Fatalf("members %+v", ms)
	}
	// Joining again is a no-op.
	if err := nodes[2].n.Join(ctxFor(t, 10*time.Second), "n3", nodes[3].n.Addr()); err != nil {
		t.Fatal(err)
	}
	if err := leader.n.Join(ctxFor(t, 10*time.Second), "", "x:1"); err == nil {
		t.Fatal("join without an id succeeded")
	}
	if got := len(members(t, nodes[0])); got != 4 {
		t.Fatalf("%d members after a repeated join", got)
	}
}

func TestFollowersForwardAndReadTheirWrites(t *testing.T) {
	nodes := cluster(t, 3, nil)
	leader := waitLeader(t, nodes)
	var follower *testNode
	for _, tn := range nodes {
		if tn != leader {
			follower = tn
		}
	}
	// A write through a follower is applied there when Propose returns.
	set(t, follower, "a", "1")
	if v, _ := follower.kv.get("a"); v != "1" {
		t.Fatalf("follower does not see its own write: %q", v)
	}
	// Every host sees it after a read index, whatever host wrote it.
	for _, tn := range nodes {
		for _, lin := range []bool{false, true} {
			catchUp(t, tn, lin)
			if v, _ := tn.kv.get("a"); v != "1" {
				t.Fatalf("%s (linearizable %v) reads %q after the read index", tn.cfg.ID, lin, v)
			}
		}
	}
}

func TestConcurrentProposalsShareEntries(t *testing.T) {
	nodes := cluster(t, 3, nil)
	waitLeader(t, nodes)
	const clients, each = 16, 50
	var wg sync.WaitGroup
	errs := make(chan error, clients) // one per client at most
	for c := range clients {
		wg.Go(func() {
			tn := nodes[c%len(nodes)]
			for i := range each {
				if _, err := tn.n.Propose(ctxFor(t, 20*time.Second), fmt.Appendf(nil, "set c%d-%d x", c, i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, tn := range nodes {
		catchUp(t, tn, false)
		tn.kv.mu.Lock()
		got := len(tn.kv.m)
		// Commands of one entry share its index: fewer distinct indexes than commands.
		distinct := len(slices.Compact(slices.Clone(tn.kv.applied)))
		total := len(tn.kv.applied)
		tn.kv.mu.Unlock()
		if got != clients*each {
			t.Fatalf("%s holds %d keys, want %d", tn.cfg.ID, got, clients*each)
		}
		t.Logf("%s: %d commands in %d entries", tn.cfg.ID, total, distinct)
	}
}

func TestLeaderFailover(t *testing.T) {
	nodes := cluster(t, 3, nil)
	leader := waitLeader(t, nodes)
	set(t, leader, "before", "1")
	// hashicorp's voters refuse votes to a candidate missing from their own latest
	// configuration: a follower that has not yet received the entry adding the third
	// server could never elect it. Stop the leader once every server holds all three.
	eventually(t, 20*time.Second, func() error {
		for _, tn := range nodes {
			if servers, _, err := tn.n.configuration(); err != nil || len(servers) != 3 {
				return fmt.Errorf("%s knows %d servers (%v)", tn.cfg.ID, len(servers), err)
			}
		}
		return nil
	})
	leader.stop()
	var rest []*testNode
	for _, tn := range nodes {
		if tn != leader {
			rest = append(rest, tn)
		}
	}
	next := waitLeader(t, rest)
	if next == leader {
		t.Fatal("the stopped node still leads")
	}
	set(t, rest[0], "after", "2")
	for _, tn := range rest {
		catchUp(t, tn, true)
		if v, _ := tn.kv.get("before"); v != "1" {
			t.Fatalf("%s lost an acknowledged write: %q", tn.cfg.ID, v)
		}
	}
	// The old leader comes back with its data dir and catches up.
	leader.restart()
	eventually(t, 20*time.Second, func() error {
		if v, _ := leader.kv.get("after"); v != "2" {
			return fmt.Errorf("restarted node has after=%q", v)
		}
		return nil
	})
}

func TestDeadVoterReplacedByNonvoter(t *testing.T) {
	nodes := cluster(t, 4, nil)
	leader := waitLeader(t, nodes)
	var victim *testNode
	for _, tn := range nodes[:3] {
		if tn != leader {
			victim = tn
			break
		}
	}
	victim.stop()
	eventually(t, 30*time.Second, func() error {
		ms := members(t, leader)
		ids := make([]string, len(ms))
		for i, m := range ms {
			ids[i] = m.ID
		}
		if slices.Contains(ids, victim.cfg.ID) {
			return fmt.Errorf("dead voter %s still a member: %v", victim.cfg.ID, ids)
		}
		if v := voters(ms); len(v) != 3 || !slices.Contains(v, "n3") {
			return fmt.Errorf("voters %v: n3 not promoted", v)
		}
		return nil
	})
	// The removed server rejoins by itself when it comes back.
	victim.restart()
	eventually(t, 30*time.Second, func() error {
		for _, m := range members(t, leader) {
			if m.ID == victim.cfg.ID {
				if m.Voter {
					return fmt.Errorf("came back as a voter while three are there")
				}
				return nil
			}
		}
		return fmt.Errorf("%s did not rejoin", victim.cfg.ID)
	})
}

func TestLeaveOnShutdown(t *testing.T) {
	nodes := cluster(t, 3, func(i int, cfg *Config) { cfg.LeaveOnShutdown = true })
	leader := waitLeader(t, nodes)
	leader.stop() // a leader leaving hands leadership over first
	var rest []*testNode
	for _, tn := range nodes {
		if tn != leader {
			rest = append(rest, tn)
		}
	}
	next := waitLeader(t, rest)
	ms := members(t, next)
	if len(ms) != 2 {
		t.Fatalf("members after a graceful leave: %+v", ms)
	}
	set(t, rest[1], "still", "writable")
}

func TestRemoveMember(t *testing.T) {
	nodes := cluster(t, 3, nil)
	leader := waitLeader(t, nodes)
	victim, other := nodes[1], nodes[2]
	if leader == victim {
		victim, other = nodes[0], nodes[2]
	} else if leader == other {
		other = nodes[0]
	}
	id := hraft.ServerID(victim.cfg.ID)
	hasNotices := func() bool {
		leader.n.notices.mu.Lock()
		defer leader.n.notices.mu.Unlock()
		return leader.n.notices.followers[id] != nil
	}
	eventually(t, 10*time.Second, func() error {
		set(t, leader, "k", "v")
		if !hasNotices() {
			return errors.New("the leader has no commit notices for the follower yet")
		}
		return nil
	})
	victim.stop() // or it asks to join again when it finds itself removed
	if err := other.n.Remove(ctxFor(t, 10*time.Second), victim.cfg.ID); err != nil {
		t.Fatal(err)
	}
	if err := other.n.Remove(ctxFor(t, 10*time.Second), "nobody"); !errors.Is(err, ErrNotMember) {
		t.Fatalf("removing an unknown server: %v, want ErrNotMember", err)
	}
	if got := len(members(t, leader)); got != 2 {
		t.Fatalf("%d members after a removal", got)
	}
	// The leader forgets what it knew of the removed server's log, and its sender.
	eventually(t, 10*time.Second, func() error {
		if hasNotices() {
			return errors.New("the leader still keeps commit notices for the removed server")
		}
		return nil
	})
}

func TestLeaderCall(t *testing.T) {
	// Handlers are registered between New and Run.
	var cfgs []Config
	for i := range 2 {
		cfg := fastConfig(t, fmt.Sprintf("c%d", i))
		cfg.Bootstrap = i == 0
		cfgs = append(cfgs, cfg)
	}
	var calls []*testNode
	for _, cfg := range cfgs {
		tn := &testNode{t: t, cfg: cfg, kv: newKV()}
		calls = append(calls, tn)
	}
	for i, tn := range calls {
		tn.runWith(func(n *Node) {
			n.HandleLeader("echo", func(ctx context.Context, p []byte) ([]byte, error) {
				return append([]byte(n.ID()+":"), p...), nil
			})
			n.HandleLeader("fail", func(ctx context.Context, p []byte) ([]byte, error) {
				return nil, errors.New("handler says no")
			})
		})
		t.Cleanup(tn.stop)
		if i == 0 {
			waitLeader(t, calls[:1])
		} else if err := calls[0].n.Join(ctxFor(t, 10*time.Second), tn.cfg.ID, tn.n.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	leader := waitLeader(t, calls)
	for _, tn := range calls {
		out, err := tn.n.LeaderCall(ctxFor(t, 10*time.Second), "echo", []byte("hi"))
		if err != nil {
			t.Fatal(err)
		}
		if want := leader.cfg.ID + ":hi"; string(out) != want {
			t.Fatalf("from %s: %q, want %q", tn.cfg.ID, out, want)
		}
		if _, err := tn.n.LeaderCall(ctxFor(t, 10*time.Second), "nope", nil); !errors.Is(err, ErrUnknownMethod) {
			t.Fatalf("unknown method from %s: %v", tn.cfg.ID, err)
		}
		if _, err := tn.n.LeaderCall(ctxFor(t, 10*time.Second), "fail", nil); !errors.Is(err, ErrRemote) {
			t.Fatalf("failing handler from %s: %v", tn.cfg.ID, err)
		}
	}
}

func (tn *testNode) runWith(register func(*Node)) {
	t := tn.t
	n, err := New(tn.cfg, tn.kv, testLogger(t, tn.cfg.ID))
	if err != nil {
		t.Fatal(err)
	}
	register(n)
	tn.n = n
	ctx, cancel := context.WithCancel(context.Background())
	tn.cancel = cancel
	tn.done = make(chan error, 1) // Run's one result
	go func() { tn.done <- n.Run(ctx) }()
	<-n.Started()
}

func TestSnapshotSaveRestore(t *testing.T) {
	nodes := cluster(t, 3, nil)
	leader := waitLeader(t, nodes)
	set(t, leader, "x", "old")
	set(t, leader, "y", "kept")
	var backup bytes.Buffer
	if err := nodes[1].n.SaveSnapshot(ctxFor(t, 10*time.Second), &backup); err != nil {
		t.Fatal(err)
	}
	saved := bytes.Clone(backup.Bytes())
	set(t, leader, "x", "new")
	set(t, leader, "z", "lost")

	// A damaged backup is refused and changes nothing.
	bad := bytes.Clone(saved)
	bad[len(bad)/2] ^= 0xff
	if err := nodes[2].n.RestoreSnapshot(ctxFor(t, 10*time.Second), bytes.NewReader(bad)); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("damaged backup: %v", err)
	}
	if err := nodes[2].n.RestoreSnapshot(ctxFor(t, 10*time.Second), bytes.NewReader(saved[:len(saved)-1])); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("truncated backup: %v", err)
	}
	// Restored through a follower: every replica goes back to the backup.
	if err := nodes[2].n.RestoreSnapshot(ctxFor(t, 20*time.Second), bytes.NewReader(saved)); err != nil {
		t.Fatal(err)
	}
	for _, tn := range nodes {
		eventually(t, 20*time.Second, func() error {
			idx, err := tn.n.ReadIndex(ctxFor(t, 5*time.Second), false)
			if err != nil {
				return err
			}
			if err := tn.n.WaitApplied(ctxFor(t, 5*time.Second), idx); err != nil {
				return err
			}
			x, _ := tn.kv.get("x")
			_, z := tn.kv.get("z")
			if x != "old" || z {
				return fmt.Errorf("%s: x=%q, z present %v", tn.cfg.ID, x, z)
			}
			return nil
		})
	}
	set(t, nodes[1], "w", "after restore")
}

func TestProposeTooLarge(t *testing.T) {
	cfg := fastConfig(t, "big")
	cfg.Bootstrap = true
	cfg.MaxCommandSize = 1024
	tn := start(t, cfg)
	waitLeader(t, []*testNode{tn})
	if _, err := tn.n.Propose(ctxFor(t, 5*time.Second), make([]byte, 1025)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized command: %v", err)
	}
}

func TestNoLeaderTimesOut(t *testing.T) {
	cfg := fastConfig(t, "lonely") // no bootstrap, nobody to join: never a leader
	tn := start(t, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := tn.n.Propose(ctx, []byte("set a b")); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("propose without a leader: %v, want ErrNoLeader", err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := tn.n.ReadIndex(ctx, false); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("read index without a leader: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	good := fastConfig(t, "v")
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"no id", func(c *Config) { c.ID = "" }},
		{"no dir", func(c *Config) { c.Dir = "" }},
		{"bad bind", func(c *Config) { c.Bind = "nope" }},
		{"unspecified advertise", func(c *Config) { c.Advertise = "0.0.0.0:1" }},
		{"even voters", func(c *Config) { c.Voters = 2 }},
		{"election below heartbeat", func(c *Config) { c.ElectionTimeout = c.HeartbeatTimeout / 2 }},
		{"lease above heartbeat", func(c *Config) { c.LeaderLeaseTimeout = 2 * c.HeartbeatTimeout }},
		{"dead timeout too short", func(c *Config) { c.DeadServerTimeout = time.Millisecond }},
		{"zero batch", func(c *Config) { c.MaxBatch = 0 }},
		{"bad peer", func(c *Config) { c.Peers = []string{"x"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			if err := c.Validate(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestCommitNotices: with CommitTimeout at an hour, raft itself would tell followers a
// commit only with the next entry; the leader's commit notices tell them at once, and
// without appending anything.
func TestCommitNotices(t *testing.T) {
	nodes := cluster(t, 3, func(_ int, cfg *Config) { cfg.CommitTimeout = time.Hour })
	leader := waitLeader(t, nodes)
	var followers []*testNode
	for _, tn := range nodes {
		if tn != leader {
			followers = append(followers, tn)
		}
	}
	before := leader.n.r.LastIndex()
	set(t, leader, "a", "1")
	if got := leader.n.r.LastIndex(); got != before+1 {
		t.Fatalf("one write appended %d entries", got-before)
	}
	for _, f := range followers {
		if err := f.n.WaitApplied(ctxFor(t, 20*time.Second), before+1); err != nil {
			t.Fatalf("%s never applied the write: %v", f.cfg.ID, err)
		}
		if v, _ := f.kv.get("a"); v != "1" {
			t.Fatalf("%s reads %q", f.cfg.ID, v)
		}
	}
	// A write through a follower returns once it is applied there, which needs the
	// notice too; so do reads at the read index on every follower.
	set(t, followers[0], "b", "2")
	for _, f := range followers {
		catchUp(t, f, false)
		if v, _ := f.kv.get("b"); v != "2" {
			t.Fatalf("%s reads %q after the read index", f.cfg.ID, v)
		}
	}
	if got := leader.n.r.LastIndex(); got != before+2 {
		t.Fatalf("two writes appended %d entries", got-before)
	}
}
