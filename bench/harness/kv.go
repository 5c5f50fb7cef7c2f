package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// kvBench runs the KV workloads against one running cluster.
type kvBench struct {
	c *Cluster
	p Profile
}

func (b *kvBench) row(id, workload, params string) Result {
	return Result{ID: id, System: b.c.System, Topo: b.c.Topo(), Workload: workload, Params: params}
}

// value is a val-size value holding n in decimal, zero-padded, so that watchers can tell
// which put they see.
func value(n int64, size int) []byte {
	return fmt.Appendf(nil, "%0*d", size, n)
}

func valueSeq(b []byte) (int64, bool) {
	b = bytes.TrimLeft(b, "0")
	if len(b) == 0 {
		return 0, true
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}

// parallel runs total operations from clients goroutines, client i on conns[i%len],
// and returns the latency of each operation, the count of failed ones (the first
// failure's error too) and the elapsed time.
func parallel(ctx context.Context, conns []Client, clients, total int, op func(ctx context.Context, c Client, n int) error) ([]time.Duration, int64, error, time.Duration) {
	var next, failed atomic.Int64
	var firstErr firstError
	lat := make([]time.Duration, total)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range clients {
		wg.Go(func() {
			c := conns[i%len(conns)]
			for ctx.Err() == nil {
				n := next.Add(1) - 1
				if n >= int64(total) {
					return
				}
				t0 := time.Now()
				if err := op(ctx, c, int(n)); err != nil {
					failed.Add(1)
					firstErr.set(err)
					lat[n] = -1
					continue
				}
				lat[n] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	ok := lat[:0]
	for _, d := range lat[:min(int(next.Load()), total)] {
		if d >= 0 {
			ok = append(ok, d)
		}
	}
	err := firstErr.get()
	if ctx.Err() != nil && int(next.Load()) < total {
		err = errors.Join(err, fmt.Errorf("stopped after %d of %d operations: %w", next.Load(), total, ctx.Err()))
	}
	return ok, failed.Load(), err, el
}

// throughput is the common shape of W1-W3: dial, run, fill the row.
func (b *kvBench) throughput(ctx context.Context, r Result, cc ConnClients, total int, op func(ctx context.Context, c Client, n int) error) (Result, error) {
	conns, err := b.c.dialAll(ctx, cc.Conns)
	if err != nil {
		return r, err
	}
	defer closeAll(conns)
	m := meter(b.c.Procs)
	lat, failed, err, el := parallel(ctx, conns, cc.Clients, total, op)
	m.fill(&r)
	r.setRate(int64(len(lat)), el)
	r.setLatency(lat)
	r.Errors = failed
	if err != nil && failed == int64(total) {
		return r, err
	}
	if err != nil {
		r.Note = "first error: " + err.Error()
	}
	return r, nil
}

func (b *kvBench) putParams(cc ConnClients, total int) string {
	return fmt.Sprintf("--conns=%d --clients=%d --total=%d --key-size=%d --val-size=%d --sequential-keys --key-space-size=%d",
		cc.Conns, cc.Clients, total, b.p.KeySize, b.p.ValSize, b.p.KeySpace)
}

// warmup writes and reads a little through every member (not measured): JIT, caches,
// connections.
func (b *kvBench) warmup(ctx context.Context) error {
	val := make([]byte, b.p.ValSize)
	conns, err := b.c.dialAll(ctx, b.c.Members())
	if err != nil {
		return err
	}
	defer closeAll(conns)
	if err := conns[0].Create(ctx, "/kv/get", val); err != nil {
		return fmt.Errorf("create /kv/get: %w", err)
	}
	for i := range max(1, b.p.KeySpace) {
		if err := conns[0].Create(ctx, b.p.key(i), val); err != nil {
			return fmt.Errorf("create %s: %w", b.p.key(i), err)
		}
	}
	_, failed, err, _ := parallel(ctx, conns, 2*len(conns), b.p.Warmup, func(ctx context.Context, c Client, n int) error {
		if n%2 == 0 {
			return c.Put(ctx, b.p.key(n), val)
		}
		return c.Get(ctx, "/kv/get", Serializable)
	})
	if failed > 0 {
		return fmt.Errorf("warmup: %d operations failed: %w", failed, err)
	}
	return nil
}

// W1, W2: puts of val-size values cycling through the key space.
func (b *kvBench) put(ctx context.Context, id string, cc ConnClients, total int) (Result, error) {
	val := make([]byte, b.p.ValSize)
	for i := range val {
		val[i] = 'v'
	}
	r := b.row(id, "put", b.putParams(cc, total))
	return b.throughput(ctx, r, cc, total, func(ctx context.Context, c Client, n int) error {
		return c.Put(ctx, b.p.key(n), val)
	})
}

// W3: gets of one key.
func (b *kvBench) rangeGet(ctx context.Context, id string, cons Consistency, cc ConnClients, total int) (Result, error) {
	r := b.row(id, "range", fmt.Sprintf("KEY --consistency=%c --conns=%d --clients=%d --total=%d", cons.String()[0], cc.Conns, cc.Clients, total))
	return b.throughput(ctx, r, cc, total, func(ctx context.Context, c Client, n int) error {
		return c.Get(ctx, "/kv/get", cons)
	})
}

// W5: clients increment one counter with read + compare-and-swap, retrying on conflict,
// for a fixed duration. The final counter must equal the successes.
func (b *kvBench) casIncrement(ctx context.Context, id string) (Result, error) {
	const key = "/kv/counter"
	r := b.row(id, "cas-increment", fmt.Sprintf("--clients=%d --duration=%s (etcd's stm shape: read, compare mod_revision/version, write, retry)", b.p.CASClients, b.p.CASDuration))
	conns, err := b.c.dialAll(ctx, min(b.p.CASClients, 10))
	if err != nil {
		return r, err
	}
	defer closeAll(conns)
	if err := conns[0].Create(ctx, key, value(0, 8)); err != nil {
		return r, err
	}
	if err := conns[0].Put(ctx, key, value(0, 8)); err != nil {
		return r, err
	}
	var succeeded, attempts, failed, unknown atomic.Int64
	var firstErr firstError
	lats := make([][]time.Duration, b.p.CASClients)
	dctx, cancel := context.WithTimeout(ctx, b.p.CASDuration)
	defer cancel()
	m := meter(b.c.Procs)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range b.p.CASClients {
		wg.Go(func() {
			c := conns[i%len(conns)]
			var val []byte
			var ver int64
			fresh := false
			for dctx.Err() == nil {
				t0 := time.Now()
				for dctx.Err() == nil {
					if !fresh {
						var err error
						if val, ver, err = c.Read(dctx, key); err != nil {
							if dctx.Err() == nil {
								failed.Add(1)
								firstErr.set(err)
							}
							break
						}
					}
					n, ok := valueSeq(val)
					if !ok {
						failed.Add(1)
						firstErr.set(fmt.Errorf("counter holds %q", val))
						return
					}
					attempts.Add(1)
					ok, cur, curVer, known, err := c.CompareAndSwap(dctx, key, ver, value(n+1, 8))
					if err != nil {
						unknown.Add(1) // it may have been applied (the deadline, a lost reply)
						if dctx.Err() == nil {
							failed.Add(1)
							firstErr.set(err)
						}
						fresh = false
						break
					}
					if ok {
						succeeded.Add(1)
						lats[i] = append(lats[i], time.Since(t0))
						val, ver, fresh = value(n+1, 8), curVer, true // every system returns the new version
						break
					}
					val, ver, fresh = cur, curVer, known
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	m.fill(&r)
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	r.setRate(succeeded.Load(), el)
	r.setLatency(all)
	r.Errors = failed.Load()
	if a := attempts.Load(); a > 0 {
		r.ConflictRatio = ptr(float64(a-succeeded.Load()) / float64(a))
	}
	// Check the counter: every success counted once, and at most the attempts whose
	// outcome is unknown on top.
	final, _, err := conns[0].Read(ctx, key)
	if err != nil {
		return r, fmt.Errorf("read the counter back: %w", err)
	}
	if n, _ := valueSeq(final); n < succeeded.Load() || n > succeeded.Load()+unknown.Load() {
		r.Errors++
		r.Note = fmt.Sprintf("counter is %d after %d successful increments and %d of unknown outcome", n, succeeded.Load(), unknown.Load())
	} else if e := firstErr.get(); e != nil {
		r.Note = "first error: " + e.Error()
	}
	return r, nil
}

// W6: watchers watchers of one key spread over WatchConns connections; one writer puts
// at WatchRate; each put's latency is measured to every watcher's notification.
func (b *kvBench) watchLatency(ctx context.Context, id string, watchers int) (Result, error) {
	const key = "/kv/watched"
	p := b.p
	r := b.row(id, "watch-latency", fmt.Sprintf("--watchers=%d --conns=%d --put-total=%d --put-rate=%d --val-size=%d", watchers, min(watchers, p.WatchConns), p.WatchPuts, p.WatchRate, p.WatchValSize))
	writer, err := b.c.Dial(ctx, 0)
	if err != nil {
		return r, err
	}
	defer writer.Close()
	if err := writer.Put(ctx, key, value(0, p.WatchValSize)); err != nil {
		return r, err
	}
	conns, err := b.c.dialAll(ctx, min(watchers, p.WatchConns))
	if err != nil {
		return r, err
	}
	defer closeAll(conns)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	starts := make([]atomic.Int64, p.WatchPuts+1) // unix nanos of put n's start
	type tally struct {
		lat       []time.Duration
		coalesced int64
		last      atomic.Int64 // highest put seen
		err       firstError   // what ended the watch
	}
	tallies := make([]*tally, watchers)
	var synced, wg sync.WaitGroup
	for i := range watchers {
		t := &tally{lat: make([]time.Duration, 0, p.WatchPuts)}
		tallies[i] = t
		evs, err := conns[i%len(conns)].Watch(wctx, key, -1)
		if err != nil {
			cancel()
			wg.Wait()
			return r, fmt.Errorf("watcher %d: %w", i, err)
		}
		synced.Add(1)
		wg.Go(func() {
			first := true
			defer func() {
				if first {
					synced.Done()
				}
			}()
			for ev := range evs {
				if ev.Err != nil {
					t.err.set(ev.Err)
					return
				}
				if ev.Sync {
					if first {
						first = false
						synced.Done()
					}
					continue
				}
				n, ok := valueSeq(ev.Value)
				if !ok {
					t.err.set(fmt.Errorf("watcher got %q", ev.Value))
					return
				}
				trigger := n
				if ev.After != nil { // coalescing system: the first put after the armed value
					a, _ := valueSeq(ev.After)
					trigger = a + 1
					t.coalesced += n - trigger
				}
				if trigger >= 1 && trigger <= int64(p.WatchPuts) {
					if s := starts[trigger].Load(); s != 0 {
						t.lat = append(t.lat, ev.At.Sub(time.Unix(0, s)))
					}
				}
				t.last.Store(n)
			}
		})
	}
	synced.Wait()
	m := meter(b.c.Procs)
	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(max(1, p.WatchRate)))
	var putErrs int64
	for n := 1; n <= p.WatchPuts && ctx.Err() == nil; n++ {
		<-tick.C
		starts[n].Store(time.Now().UnixNano())
		if err := writer.Put(ctx, key, value(int64(n), p.WatchValSize)); err != nil {
			putErrs++
			if putErrs == 1 {
				r.Note = "first put error: " + err.Error()
			}
		}
	}
	tick.Stop()
	// Every watcher must see the last put; wait a bounded time for the stragglers.
	deadline := time.Now().Add(10 * time.Second)
	for _, t := range tallies {
		for t.last.Load() < int64(p.WatchPuts) && time.Now().Before(deadline) && t.err.get() == nil {
			time.Sleep(5 * time.Millisecond)
		}
	}
	el := time.Since(start)
	m.fill(&r)
	cancel()
	wg.Wait()
	var all []time.Duration
	var coalesced, behind int64
	var firstErr error
	for _, t := range tallies {
		all = append(all, t.lat...)
		coalesced += t.coalesced
		if t.last.Load() < int64(p.WatchPuts) {
			behind++
		}
		if e := t.err.get(); firstErr == nil && e != nil {
			firstErr = e
		}
	}
	r.setRate(int64(len(all)), el)
	r.setLatency(all)
	r.Errors = putErrs + behind
	r.Coalesced = ptr(coalesced)
	if behind > 0 {
		r.Note = fmt.Sprintf("%d watchers never saw the last put", behind)
	}
	if firstErr != nil {
		r.Note += " watch error: " + firstErr.Error()
	}
	return r, nil
}

// W8: a watcher sees some updates, disconnects (its connection closed), the writer makes
// ResumeUpdates updates, and the watcher reconnects to another member resuming from the
// last revision it saw. Counts updates missed and delivered twice; the latency is the
// time from the reconnect to the last update.
func (b *kvBench) watchResume(ctx context.Context, id string) (Result, error) {
	const key = "/kv/resume"
	const before = 10
	p := b.p
	r := b.row(id, "watch-resume", fmt.Sprintf("--updates=%d (disconnected) --from-revision=last-seen", p.ResumeUpdates))
	writer, err := b.c.Dial(ctx, 0)
	if err != nil {
		return r, err
	}
	defer writer.Close()
	if err := writer.Put(ctx, key, value(0, 16)); err != nil {
		return r, err
	}
	seen := map[int64]int{}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	w1, err := b.c.Dial(ctx, b.c.Members()-1)
	if err != nil {
		return r, err
	}
	evs, err := w1.Watch(wctx, key, -1)
	if err != nil {
		w1.Close()
		return r, err
	}
	if ev := <-evs; ev.Err != nil || !ev.Sync {
		w1.Close()
		return r, fmt.Errorf("first watch: no sync event: %v", ev.Err)
	}
	for n := 1; n <= before; n++ {
		if err := writer.Put(ctx, key, value(int64(n), 16)); err != nil {
			w1.Close()
			return r, err
		}
	}
	var lastRev int64
	for lastRev == 0 || seen[before] == 0 {
		ev, ok := <-evs
		if !ok || ev.Err != nil {
			w1.Close()
			return r, fmt.Errorf("first watch ended before update %d: %v", before, ev.Err)
		}
		n, _ := valueSeq(ev.Value)
		seen[n]++
		lastRev = ev.Rev
		if n == before {
			break
		}
	}
	w1.Close() // the disconnect
	m := meter(b.c.Procs)
	for n := before + 1; n <= before+p.ResumeUpdates; n++ {
		if err := writer.Put(ctx, key, value(int64(n), 16)); err != nil {
			return r, err
		}
	}
	last := int64(before + p.ResumeUpdates)
	w2, err := b.c.Dial(ctx, 1%b.c.Members())
	if err != nil {
		return r, err
	}
	defer w2.Close()
	reconnect := time.Now()
	evs, err = w2.Watch(wctx, key, lastRev)
	if err != nil {
		return r, fmt.Errorf("resume from revision %d: %w", lastRev, err)
	}
	var caughtUp time.Duration
	received := int64(0)
	for caughtUp == 0 {
		ev, ok := <-evs
		if !ok || ev.Err != nil {
			r.Note = fmt.Sprintf("resumed watch ended: %v", ev.Err)
			break
		}
		if ev.Sync && ev.Value == nil {
			continue
		}
		n, _ := valueSeq(ev.Value)
		seen[n]++
		received++
		if n == last {
			caughtUp = time.Since(reconnect)
		}
	}
	m.fill(&r)
	var missed, dup int64
	for n := int64(1); n <= last; n++ {
		c := seen[n]
		if c == 0 && n > before {
			missed++
		}
		if c > 1 {
			dup += int64(c - 1)
		}
	}
	r.Missed, r.Duplicated = ptr(missed), ptr(dup)
	r.Ops, r.Secs = received, caughtUp.Seconds()
	r.Max = ms(caughtUp) // one sample: the time from the reconnect to the last update
	if b.c.System == ZooKeeper {
		r.Note = "ZooKeeper watches are one-shot and carry no history: the reconnected watcher reads the current state only"
	}
	return r, nil
}

// firstError keeps the first error set; safe for concurrent use.
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) set(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}
