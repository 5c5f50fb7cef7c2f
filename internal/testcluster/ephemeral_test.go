package testcluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/cocaine/cocaine/rpc"
)

// exists reports whether path exists, reading through host n.
func exists(t *testing.T, n *Node, path string) (bool, error) {
	a, err := ucall(t.Context(), n.Dial(t, "unicorn"), 5*time.Second, "get", path)
	if err != nil {
		return false, err
	}
	var pair []any
	if err := a.Scan(&pair); err != nil {
		return false, err
	}
	_, ver, err := versioned(pair)
	return ver >= 0, err
}

// TestEphemeralNodesGoWithTheirOwner: an ephemeral node vanishes when the connection
// that created it closes, and when the host that connection was on dies.
func TestEphemeralNodesGoWithTheirOwner(t *testing.T) {
	c := New(t, Options{Nodes: 3})
	c.WaitLeader(t)
	a := c.Node(1).Dial(t, "unicorn")
	b := c.Node(2).Dial(t, "unicorn")
	if _, err := ucall(t.Context(), a, 10*time.Second, "create", "/eph/a", "x", true); err != nil {
		t.Fatal(err)
	}
	if _, err := ucall(t.Context(), b, 10*time.Second, "create", "/eph/b", "y", true); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/eph/a", "/eph/b"} {
		if ok, err := exists(t, c.Node(0), p); err != nil || !ok {
			t.Fatalf("%s missing on h0: %v", p, err)
		}
	}
	a.Close()
	Eventually(t, 10*time.Second, func() error {
		if ok, err := exists(t, c.Node(0), "/eph/a"); err != nil || ok {
			return fmt.Errorf("/eph/a still there after its connection closed (%v)", err)
		}
		return nil
	})
	c.Node(2).Kill() // the host dies; its session leases expire at the leader
	Eventually(t, 20*time.Second, func() error {
		if ok, err := exists(t, c.Node(0), "/eph/b"); err != nil || ok {
			return fmt.Errorf("/eph/b still there after its host died (%v)", err)
		}
		return nil
	})
}

// TestChaosLocksNeverHeldTwice: clients on every host contend for one lock while hosts
// are isolated and crashed. The intervals in which clients believed they held it never
// overlap.
func TestChaosLocksNeverHeldTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test")
	}
	c := New(t, Options{Nodes: 3})
	c.WaitLeader(t)
	ctx, stop := context.WithTimeout(t.Context(), 12*time.Second)
	defer stop()
	type hold struct {
		client     int
		start, end time.Time
		lost       bool
	}
	var (
		mu      sync.Mutex
		holds   []hold
		nodesMu sync.Mutex
		wg      sync.WaitGroup
	)
	for id := range 6 {
		wg.Go(func() {
			cl := &client{c: c, rng: rand.New(rand.NewPCG(uint64(id), 3)), mu: &nodesMu}
			defer cl.drop()
			for ctx.Err() == nil {
				conn, err := cl.get(ctx)
				if err != nil {
					pause(ctx, 50*time.Millisecond)
					continue
				}
				h, ok := lockOnce(ctx, conn, id, cl.rng)
				if ok {
					mu.Lock()
					holds = append(holds, hold{client: id, start: h.start, end: h.end, lost: h.lost})
					mu.Unlock()
				}
				if h.lost || !ok {
					cl.drop()
				}
			}
		})
	}
	wg.Go(func() {
		nemesis(ctx, t, c, func(f string, a ...any) {
			nodesMu.Lock()
			defer nodesMu.Unlock()
			t.Logf(f, a...)
		})
	})
	wg.Wait()
	sort.Slice(holds, func(i, j int) bool { return holds[i].start.Before(holds[j].start) })
	lost := 0
	for i, h := range holds {
		if h.lost {
			lost++
		}
		if i > 0 && h.start.Before(holds[i-1].end) {
			t.Errorf("client %d acquired the lock at +%s while client %d held it until +%s",
				h.client, h.start.Sub(holds[0].start), holds[i-1].client, holds[i-1].end.Sub(holds[0].start))
		}
	}
	if len(holds) < 5 {
		t.Errorf("only %d acquisitions in the run", len(holds))
	}
	t.Logf("%d acquisitions, %d ended by losing the lock", len(holds), lost)
}

type heldLock struct {
	start, end time.Time
	lost       bool
}

// lockOnce takes the lock, holds it a little and releases it by closing the channel.
// It reports whether the lock was acquired, and when the client stopped believing it
// held it (release, or the error that ended the stream).
func lockOnce(ctx context.Context, conn *rpc.Conn, id int, rng *rand.Rand) (heldLock, bool) {
	var h heldLock
	ch, err := conn.Call(ctx, "lock", "/locks/L")
	if err != nil {
		return h, false
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	m, err := ch.Recv(wctx)
	cancel()
	if err != nil || m.Err() != nil {
		ch.SendName("close")
		return h, false
	}
	var held bool
	if err := m.Args.Scan(&held); err != nil || !held {
		ch.SendName("close")
		return h, false
	}
	h.start = time.Now()
	hold := time.Duration(10+rng.IntN(40)) * time.Millisecond
	hctx, cancel := context.WithTimeout(ctx, hold)
	m, err = ch.Recv(hctx)
	cancel()
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		// Held for the whole time: release. The end is stamped before the close is
		// sent, so it is no later than the moment another client can get the lock.
		h.end = time.Now()
		ch.SendName("close")
	default: // an error (or anything) on the stream: the lock is lost now
		h.end, h.lost = time.Now(), true
		ch.SendName("close")
	}
	_ = m
	return h, true
}

// TestRegisterModelRejects checks that the linearizability check can fail: a read of
// a value nobody wrote, and a stale read after a completed write.
func TestRegisterModelRejects(t *testing.T) {
	m := registerModel.ToModel()
	bogus := []porcupine.Operation{
		{Input: regInput{key: "k"}, Call: 0, Output: regOutput{val: "never", ver: 1}, Return: 1},
	}
	if porcupine.CheckOperations(m, bogus) {
		t.Error("a read of a value nobody wrote passed")
	}
	stale := []porcupine.Operation{
		{Input: regInput{key: "k", put: true, val: "a", expect: 0}, Call: 0, Output: regOutput{ok: true, val: "a", ver: 1}, Return: 1},
		{Input: regInput{key: "k"}, Call: 2, Output: regOutput{val: "init", ver: 0}, Return: 3},
	}
	if porcupine.CheckOperations(m, stale) {
		t.Error("a stale read after a completed write passed")
	}
	maybe := []porcupine.Operation{
		{Input: regInput{key: "k", put: true, val: "a", expect: 0}, Call: 0, Output: regOutput{unknown: true}, Return: 1 << 62},
		{Input: regInput{key: "k"}, Call: 2, Output: regOutput{val: "init", ver: 0}, Return: 3},
		{Input: regInput{key: "k"}, Call: 4, Output: regOutput{val: "a", ver: 1}, Return: 5},
	}
	if !porcupine.CheckOperations(m, maybe) {
		t.Error("a write of unknown outcome seen late was rejected")
	}
	_ = slices.Equal[[]int]
}
