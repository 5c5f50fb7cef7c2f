package testcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/cocaine/cocaine/internal/daemon"
	"github.com/cocaine/cocaine/rpc"
)

// ucall makes one unicorn call with a timeout and returns the value's args.
func ucall(ctx context.Context, c *rpc.Conn, d time.Duration, method string, args ...any) (rpc.Args, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	ch, err := c.Call(ctx, method, args...)
	if err != nil {
		return nil, err
	}
	return ch.Get(ctx)
}

// versioned decodes [[value, version]] or [bool, [value, version]] parts.
func versioned(v any) (string, int64, error) {
	pair, ok := v.([]any)
	if !ok || len(pair) != 2 {
		return "", 0, fmt.Errorf("not [value, version]: %v", v)
	}
	ver, err := toInt(pair[1])
	if err != nil {
		return "", 0, err
	}
	s, _ := pair[0].(string)
	return s, ver, nil
}

func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case uint64:
		return int64(x), nil
	}
	return 0, fmt.Errorf("not an integer: %v", v)
}

// nemesis injects one fault at a time until ctx ends: isolate the leader, crash a host
// and restart it, or slow the links of a host, each for a while, then heal.
func nemesis(ctx context.Context, t *testing.T, c *Cluster, log func(string, ...any)) {
	rng := rand.New(rand.NewPCG(1, 2))
	for ctx.Err() == nil {
		pause(ctx, 500*time.Millisecond)
		switch rng.IntN(3) {
		case 0:
			var ld *Node
			for _, n := range c.Nodes() {
				if n.Running() {
					if ok, _ := n.Daemon().Raft().Leadership(); ok {
						ld = n
					}
				}
			}
			if ld == nil {
				continue
			}
			log("isolate leader %s", ld.Name)
			c.Net.Isolate(ld.Name)
			pause(ctx, 1500*time.Millisecond)
			c.Net.Heal()
			log("heal")
		case 1:
			n := c.Node(rng.IntN(len(c.Nodes())))
			log("crash %s", n.Name)
			n.Kill()
			pause(ctx, 1500*time.Millisecond)
			n.Restart()
			log("restarted %s", n.Name)
		case 2:
			n := c.Node(rng.IntN(len(c.Nodes())))
			log("slow links of %s", n.Name)
			for _, o := range c.Others(n) {
				c.Net.Delay(n.Name, o, 30*time.Millisecond)
			}
			pause(ctx, 1500*time.Millisecond)
			c.Net.Heal()
			log("heal")
		}
	}
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// client is a test client that reconnects to a random running host when its
// connection breaks.
type client struct {
	c    *Cluster
	rng  *rand.Rand
	mu   *sync.Mutex // guards the cluster's nodes against the nemesis' restarts
	conn *rpc.Conn
	on   *Node
}

func (cl *client) get(ctx context.Context) (*rpc.Conn, error) {
	if cl.conn != nil {
		select {
		case <-cl.conn.Done():
			cl.conn = nil
		default:
			return cl.conn, nil
		}
	}
	cl.mu.Lock()
	var up []*Node
	for _, n := range cl.c.Nodes() {
		if n.Running() {
			up = append(up, n)
		}
	}
	if len(up) == 0 {
		cl.mu.Unlock()
		return nil, errors.New("no host up")
	}
	n := up[cl.rng.IntN(len(up))]
	loc := n.Locator()
	cl.mu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := rpc.Service(dctx, loc, "unicorn", rpc.DialConfig{})
	if err != nil {
		return nil, err
	}
	cl.conn, cl.on = conn, n
	return conn, nil
}

func (cl *client) drop() {
	if cl.conn != nil {
		cl.conn.Close()
		cl.conn = nil
	}
}

// Porcupine model of one unicorn node used as a versioned register.
type regState struct {
	val string
	ver int64
}

type regInput struct {
	key    string
	put    bool
	val    string
	expect int64
}

type regOutput struct {
	unknown bool // the put's outcome is unknown: it may or may not have happened
	ok      bool // put: the compare held
	val     string
	ver     int64
}

var registerModel = porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(regInput).key
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() []any { return []any{regState{val: "init", ver: 0}} },
	Step: func(state, input, output any) []any {
		s, in, out := state.(regState), input.(regInput), output.(regOutput)
		if !in.put {
			if out.val == s.val && out.ver == s.ver {
				return []any{s}
			}
			return nil
		}
		applied := s
		if s.ver == in.expect {
			applied = regState{val: in.val, ver: s.ver + 1}
		}
		switch {
		case out.unknown:
			return []any{s, applied}
		case out.ok:
			if s.ver != in.expect || out.ver != s.ver+1 || out.val != in.val {
				return nil
			}
			return []any{applied}
		default: // the compare failed: the answer is the current state
			if s.ver == in.expect || out.val != s.val || out.ver != s.ver {
				return nil
			}
			return []any{s}
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		if in.put {
			return fmt.Sprintf("put(%s, %s, %d) -> %+v", in.key, in.val, in.expect, out)
		}
		return fmt.Sprintf("get(%s) -> %q@%d", in.key, out.val, out.ver)
	},
}

// TestChaosLinearizableAndConsistent runs compare-and-set clients and watchers against
// a 3-host cluster while a nemesis partitions the leader, crashes hosts and slows
// links. At the end: the put/get history is linearizable (porcupine), every replica
// holds the same state, and every watch stream was gap-free, duplicate-free and
// monotonic, across the reconnects it needed.
func TestChaosLinearizableAndConsistent(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test")
	}
	// The watchers resume from the first revision and the check at the end reads the
	// whole history from it: keep all of it (12 s of writes are some 25,000 changes).
	c := New(t, Options{Nodes: 3, Configure: func(_ int, cfg *daemon.Config) { cfg.Unicorn.HistorySize = 1 << 20 }})
	c.WaitLeader(t)
	keys := []string{"/lin/k0", "/lin/k1", "/lin/k2"}
	setup := c.Node(0).Dial(t, "unicorn")
	for _, k := range keys {
		if _, err := ucall(t.Context(), setup, 10*time.Second, "create", k, "init"); err != nil {
			t.Fatal(err)
		}
	}
	var startRev int64
	if a, err := ucall(t.Context(), setup, 10*time.Second, "revision"); err != nil {
		t.Fatal(err)
	} else if err := a.Scan(&startRev, new(int64)); err != nil {
		t.Fatal(err)
	}

	ctx, stop := context.WithTimeout(t.Context(), 12*time.Second)
	defer stop()
	var (
		nodesMu sync.Mutex
		histMu  sync.Mutex
		history []porcupine.Operation
		clock   atomic.Int64
		wg      sync.WaitGroup
	)
	base := time.Now()
	now := func() int64 { return int64(time.Since(base)) + clock.Add(1) }
	record := func(op porcupine.Operation) {
		histMu.Lock()
		history = append(history, op)
		histMu.Unlock()
	}
	for id := range 6 {
		wg.Go(func() {
			cl := &client{c: c, rng: rand.New(rand.NewPCG(uint64(id), 7)), mu: &nodesMu}
			defer cl.drop()
			last := map[string]int64{}
			for n := 0; ctx.Err() == nil; n++ {
				conn, err := cl.get(ctx)
				if err != nil {
					pause(ctx, 50*time.Millisecond)
					continue
				}
				k := keys[cl.rng.IntN(len(keys))]
				if cl.rng.IntN(2) == 0 {
					call := now()
					a, err := ucall(ctx, conn, 3*time.Second, "get", k, "linearizable")
					if err != nil {
						cl.drop()
						continue // a failed read has no effect
					}
					var pair []any
					if err := a.Scan(&pair); err != nil {
						t.Errorf("get: %v", err)
						return
					}
					val, ver, err := versioned(pair)
					if err != nil {
						t.Errorf("get: %v", err)
						return
					}
					last[k] = ver
					record(porcupine.Operation{ClientId: id, Input: regInput{key: k}, Call: call, Output: regOutput{val: val, ver: ver}, Return: now()})
					continue
				}
				in := regInput{key: k, put: true, val: fmt.Sprintf("c%d-%d", id, n), expect: last[k]}
				call := now()
				a, err := ucall(ctx, conn, 3*time.Second, "put", k, in.val, in.expect)
				if err != nil {
					cl.drop()
					record(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: regOutput{unknown: true}, Return: math.MaxInt64})
					continue
				}
				var ok bool
				var pair []any
				if err := a.Scan(&ok, &pair); err != nil {
					t.Errorf("put: %v", err)
					return
				}
				val, ver, err := versioned(pair)
				if err != nil {
					t.Errorf("put: %v", err)
					return
				}
				last[k] = ver
				record(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: regOutput{ok: ok, val: val, ver: ver}, Return: now()})
			}
		})
	}

	// Watchers: each follows /lin from the start revision, resuming on another host
	// from the last revision it saw whenever its stream breaks.
	type seen struct {
		rev  int64
		path string
		ver  int64
	}
	streams := make([][]seen, 3)
	for w := range streams {
		wg.Go(func() {
			cl := &client{c: c, rng: rand.New(rand.NewPCG(uint64(w), 9)), mu: &nodesMu}
			defer cl.drop()
			from := startRev
			for ctx.Err() == nil {
				conn, err := cl.get(ctx)
				if err != nil {
					pause(ctx, 50*time.Millisecond)
					continue
				}
				ch, err := conn.Call(ctx, "watch", "/lin", from, true)
				if err != nil {
					cl.drop()
					continue
				}
				for ctx.Err() == nil {
					m, err := ch.Recv(ctx)
					if err != nil || m.Err() != nil {
						break
					}
					var rev, ver int64
					var kind, path string
					var value any
					if err := m.Args.Scan(&rev, &kind, &path, &value, &ver); err != nil {
						t.Errorf("watch event: %v", err)
						return
					}
					if kind == "sync" {
						if rev != from {
							t.Errorf("watch from %d started at %d", from, rev)
						}
						continue
					}
					streams[w] = append(streams[w], seen{rev, path, ver})
					from = rev
				}
				cl.drop()
			}
		})
	}
	// Storage writers: every acknowledged write must be on every replica at the end.
	var ackedMu sync.Mutex
	var acked []string
	for id := range 2 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(id), 11))
			var conn *rpc.Conn
			defer func() {
				if conn != nil {
					conn.Close()
				}
			}()
			for n := 0; ctx.Err() == nil; n++ {
				if conn == nil {
					nodesMu.Lock()
					var up []*Node
					for _, x := range c.Nodes() {
						if x.Running() {
							up = append(up, x)
						}
					}
					var loc []rpc.Endpoint
					if len(up) > 0 {
						loc = up[rng.IntN(len(up))].Locator()
					}
					nodesMu.Unlock()
					dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
					var err error
					conn, err = rpc.Service(dctx, loc, "storage", rpc.DialConfig{})
					cancel()
					if err != nil {
						conn = nil
						pause(ctx, 50*time.Millisecond)
						continue
					}
				}
				key := fmt.Sprintf("w%d-%d", id, n)
				if _, err := ucall(ctx, conn, 3*time.Second, "write", "chaos", key, []byte(key), []string{"chaos"}); err != nil {
					conn.Close()
					conn = nil
					continue
				}
				ackedMu.Lock()
				acked = append(acked, key)
				ackedMu.Unlock()
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
	c.Net.Heal()
	for _, n := range c.Nodes() {
		if !n.Running() {
			n.Restart()
		}
	}
	c.WaitLeader(t)

	puts, unknown := 0, 0
	for _, op := range history {
		if op.Input.(regInput).put {
			puts++
			if op.Output.(regOutput).unknown {
				unknown++
			}
		}
	}
	t.Logf("%d operations (%d puts, %d with an unknown outcome)", len(history), puts, unknown)

	// Replicas identical.
	assertReplicasEqual(t, c)

	// Every acknowledged storage write is on every replica.
	for _, n := range c.Nodes() {
		a, err := ucall(t.Context(), n.Dial(t, "storage"), 10*time.Second, "find", "chaos", []string{"chaos"})
		if err != nil {
			t.Fatalf("%s: find: %v", n.Name, err)
		}
		var keys []string
		if err := a.Scan(&keys); err != nil {
			t.Fatal(err)
		}
		missing := 0
		for _, k := range acked {
			if _, ok := slices.BinarySearch(keys, k); !ok {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("%s lacks %d of %d acknowledged storage writes", n.Name, missing, len(acked))
		}
	}
	t.Logf("%d acknowledged storage writes on every replica", len(acked))

	// Watch streams: the canonical history of /lin, read once at the end.
	conn := c.Node(0).Dial(t, "unicorn")
	wctx, wcancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer wcancel()
	ch, err := conn.Call(wctx, "watch", "/lin", startRev, true)
	if err != nil {
		t.Fatal(err)
	}
	// The canonical history ends at the last change of a /lin key (other parts of the
	// tree, the locator's announces, move the global revision too).
	var endRev int64
	store := c.Node(0).Daemon().Unicorn().Store()
	for _, k := range keys {
		if info, ok := store.Node(k); ok {
			endRev = max(endRev, int64(info.ModRevision))
		}
	}
	var canon []seen
	written := map[string]int64{} // path and value of every change -> its version
	for {
		m, err := ch.Recv(wctx)
		if err != nil {
			t.Fatalf("canonical watch: %v", err)
		}
		if m.Err() != nil {
			t.Fatalf("canonical watch: %v", m.Err())
		}
		var rev, ver int64
		var kind, path string
		var value any
		if err := m.Args.Scan(&rev, &kind, &path, &value, &ver); err != nil {
			t.Fatal(err)
		}
		if kind != "sync" {
			canon = append(canon, seen{rev, path, ver})
			if v, ok := value.([]byte); ok {
				written[path+"\x00"+string(v)] = ver
			} else if v, ok := value.(string); ok {
				written[path+"\x00"+v] = ver
			}
		}
		if rev >= endRev {
			break
		}
	}

	// Linearizability. Each put wrote a value of its own, so the history above tells
	// whether a put of unknown outcome took effect, and with which version: one that
	// did is a put that succeeded (answered at an unknown time), one that did not
	// changed nothing and constrains nothing. Left unknown, each doubles the states
	// the checker must explore.
	resolved := make([]porcupine.Operation, 0, len(history))
	tookEffect := 0
	for _, op := range history {
		in, out := op.Input.(regInput), op.Output.(regOutput)
		if in.put && out.unknown {
			ver, ok := written[in.key+"\x00"+in.val]
			if !ok {
				continue
			}
			op.Output = regOutput{ok: true, val: in.val, ver: ver}
			tookEffect++
		}
		resolved = append(resolved, op)
	}
	t.Logf("of the puts of unknown outcome, %d took effect", tookEffect)
	res, info := porcupine.CheckOperationsVerbose(registerModel.ToModel(), resolved, 60*time.Second)
	if res != porcupine.Ok {
		t.Errorf("history of %d operations is not linearizable (%s)", len(resolved), res)
		for _, part := range info.PartialLinearizationsOperations() {
			for _, ops := range part {
				t.Logf("longest partial linearization: %d ops", len(ops))
				break
			}
		}
	}
	for w, got := range streams {
		if len(got) == 0 {
			t.Errorf("watcher %d saw nothing", w)
			continue
		}
		if len(got) > len(canon) || !slices.Equal(got, canon[:len(got)]) {
			i := 0
			for i < len(got) && i < len(canon) && got[i] == canon[i] {
				i++
			}
			t.Errorf("watcher %d: %d events differ from the history from event %d on: got %v…, want %v…", w, len(got), i, got[i:min(i+3, len(got))], canon[i:min(i+3, len(canon))])
			continue
		}
		t.Logf("watcher %d: %d events, gap-free (history has %d)", w, len(got), len(canon))
	}
}

// assertReplicasEqual waits until every host has applied the same index and checks
// that their replicated state machines persist byte-identical snapshots.
func assertReplicasEqual(t *testing.T, c *Cluster) {
	t.Helper()
	Eventually(t, 30*time.Second, func() error {
		var ref []byte
		var refName string
		var idx uint64
		for i, n := range c.Nodes() {
			applied := n.Daemon().Raft().AppliedIndex()
			if i == 0 {
				idx = applied
			} else if applied != idx {
				return fmt.Errorf("%s applied %d, %s %d", refName, idx, n.Name, applied)
			}
			snap, err := n.Daemon().Unicorn().Store().Snapshot()
			if err != nil {
				return err
			}
			var b bytes.Buffer
			err = snap.Persist(&b)
			snap.Release()
			if err != nil {
				return err
			}
			if ref == nil {
				ref, refName = b.Bytes(), n.Name
			} else if !bytes.Equal(ref, b.Bytes()) {
				return fmt.Errorf("unicorn state of %s differs from %s's", n.Name, refName)
			}
		}
		return nil
	})
}
