package node

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cocaine/cocaine/internal/lifecycle"
	"github.com/cocaine/cocaine/rpc"
)

// engine is one app's overseer: its queue, its pool of workers and their state machines
// (plugins.md §2.8, §2.12). One goroutine, run, owns all of it; session readers, timers
// and process waiters post closures to it through events.
type engine struct {
	app      string
	profile  Profile
	manifest Manifest
	dir      string // the spool directory, the workers' working directory
	endpoint string // the unix socket workers connect to
	iso      Isolate
	deps     *Deps
	log      *slog.Logger
	now      func() time.Time
	group    *lifecycle.Group // spawns, process waiters, crash log writes
	sends    *lifecycle.Group // replies sent off the loop: the app's group
	publish  func() (withdraw func(), err error)

	// events carries work for the loop. Its size absorbs bursts of enqueues and
	// completions from many connections; a full buffer makes session readers wait,
	// which is the backpressure we want.
	events chan func()
	done   chan struct{} // closed when run returns
	born   time.Time

	// Owned by run.
	queue        []*request
	workers      map[string]*worker // the pool: every worker not yet shut down
	dying        map[*worker]struct{}
	target       int // control(N): > 0 pins the pool size (manual mode)
	stopping     bool
	blockedUntil time.Time // crash back-off: no spawns before this
	lastCrash    time.Time
	backoff      time.Duration
	totalLoad    int
	balancing    bool
	again        bool
	withdraw     func()
	stats        stats
}

// Crash back-off bounds (plugins.md §2.12).
const (
	minBackoff = time.Second
	maxBackoff = 32 * time.Second
)

func newEngine(a *app) *engine {
	now := a.deps.Now
	if now == nil {
		now = time.Now
	}
	return &engine{
		app: a.name, profile: a.profile, manifest: a.manifest, dir: a.dir, endpoint: a.endpoint,
		iso: a.iso, deps: a.deps, log: a.log, now: now,
		group:   lifecycle.NewGroup(context.Background()),
		events:  make(chan func(), 1024), // see the field comment
		done:    make(chan struct{}),
		born:    now(),
		workers: map[string]*worker{},
		dying:   map[*worker]struct{}{},
	}
}

// run is the loop. It returns once stop was asked and every worker has exited.
func (e *engine) run() {
	defer close(e.done)
	defer e.group.Stop()
	var tick func()
	tick = func() {
		if !e.stopping {
			e.stats.tick(len(e.queue))
			e.after(tickEvery, tick)
		}
	}
	e.after(tickEvery, tick)
	for f := range e.events {
		f()
		if e.stopping && len(e.workers) == 0 && len(e.dying) == 0 {
			return
		}
	}
}

// post hands fn to the loop. It reports false once the loop has ended. Never call it
// from the loop itself: with a full buffer that would wait for itself.
func (e *engine) post(fn func()) bool {
	select {
	case e.events <- fn:
		return true
	case <-e.done:
		return false
	}
}

// deliver runs a send off the loop: a peer that does not read its replies fills its
// connection's buffer, and then its sends block; that must not stall the whole app. The
// sends belong to the app's group, which is stopped after the app's connections are
// told to close, so a blocked send ends with its connection.
func (e *engine) deliver(send func()) {
	if e.sends == nil || !e.sends.Go(func(context.Context) { send() }) {
		send() // not running, or stopped: nothing is left to stall
	}
}

// after runs fn on the loop after d.
func (e *engine) after(d time.Duration, fn func()) *time.Timer {
	return time.AfterFunc(d, func() { e.post(fn) })
}

// stop terminates every worker with ErrShuttingDown and fails the queue; run returns once
// they have exited. It does not wait.
func (e *engine) stop() {
	e.post(func() {
		if e.stopping {
			return
		}
		e.stopping = true
		e.target = 0
		if e.withdraw != nil {
			e.withdraw()
			e.withdraw = nil
		}
		for _, r := range e.queue {
			r.fail(fmt.Errorf("%w: app %q is stopping", ErrShuttingDown, e.app))
		}
		e.queue = nil
		for _, w := range e.workers {
			w.terminate(ErrShuttingDown)
		}
	})
}

// enqueue admits a request from a client channel (plugins.md §2.8). It runs on the
// client's session reader and does not block on the loop's work.
func (e *engine) enqueue(event string, req *rpc.Request) error {
	now := e.now()
	timeout := e.profile.RequestTimeout
	if t, ok := requestTimeout(req.Headers); ok {
		timeout = t
	}
	args := rpc.AppendArrayHeader(nil, 1)
	args = rpc.AppendString(args, event)
	r := &request{
		e: e, event: event, args: args, headers: forwarded(req.Headers), trace: req.Trace,
		birth: now, deadline: now.Add(timeout), client: req.Tx,
	}
	r.timer = e.after(timeout, func() { e.expire(r) })
	req.Receive(r)
	if !e.post(func() { e.admit(r) }) {
		r.timer.Stop()
		return fmt.Errorf("%w: %q", ErrBrokenPipe, e.app)
	}
	return nil
}

func (e *engine) admit(r *request) {
	if e.stopping {
		r.fail(fmt.Errorf("%w: %q", ErrBrokenPipe, e.app))
		return
	}
	p := e.profile
	n := len(e.queue)
	if p.QueueLimit > 0 && n >= p.QueueLimit {
		e.stats.rejected++
		r.fail(fmt.Errorf("%w: %d events queued, queue-limit is %d", ErrQueueFull, n, p.QueueLimit))
		return
	}
	if free := p.PoolLimit*p.Concurrency - e.totalLoad; p.QueueLimit == 0 && n >= free {
		e.stats.rejected++
		r.fail(fmt.Errorf("%w: %d events queued and %d free slots in the pool (queue-limit 0)", ErrQueueFull, n, free))
		return
	}
	e.stats.accepted++
	e.queue = append(e.queue, r)
	e.rebalanceEvents()
	e.rebalanceWorkers()
}

// expire is a request's deadline.
func (e *engine) expire(r *request) {
	r.mu.Lock()
	state := r.state
	r.mu.Unlock()
	switch state {
	case reqDone:
		return
	case reqAttached:
		r.abort(fmt.Errorf("%w: after %s", ErrTimeout, r.deadline.Sub(r.birth)))
		return
	}
	e.unqueue(r)
	r.fail(fmt.Errorf("%w: event %q waited %s", ErrDeadline, r.event, r.deadline.Sub(r.birth)))
}

// unqueue takes r out of the queue, if it is there.
func (e *engine) unqueue(r *request) {
	for i, q := range e.queue {
		if q == r {
			e.queue = slices.Delete(e.queue, i, i+1)
			return
		}
	}
}

// rebalanceEvents assigns queued events to the least-loaded active workers with a free
// slot, in FIFO order.
func (e *engine) rebalanceEvents() {
	if e.balancing { // re-entered through a worker's shutdown: the outer call goes on
		e.again = true
		return
	}
	e.balancing = true
	defer func() { e.balancing = false }()
	for {
		e.again = false
		for len(e.queue) > 0 {
			r := e.queue[0]
			r.mu.Lock()
			gone := r.state != reqQueued
			r.mu.Unlock()
			if gone {
				e.pop()
				continue
			}
			if !e.now().Before(r.deadline) {
				e.pop()
				r.fail(fmt.Errorf("%w: event %q waited %s", ErrDeadline, r.event, r.deadline.Sub(r.birth)))
				continue
			}
			w := e.pick()
			if w == nil {
				break
			}
			e.pop()
			e.assign(w, r)
		}
		if !e.again {
			return
		}
	}
}

func (e *engine) pop() {
	e.queue[0] = nil
	e.queue = e.queue[1:]
}

// pick returns the active worker with the smallest load below concurrency.
func (e *engine) pick() *worker {
	var best *worker
	for _, w := range e.workers {
		if w.state != stateActive || w.load >= e.profile.Concurrency {
			continue
		}
		if best == nil || w.load < best.load {
			best = w
		}
	}
	return best
}

// invokeMethod opens a request channel on a worker (plugins.md §2.9).
var invokeMethod = rpc.Method{ID: 0, Name: "invoke", Dispatch: rpc.Streaming, Upstream: rpc.Streaming}

func (e *engine) assign(w *worker, r *request) {
	r.w = w
	w.load++
	w.accepted++
	e.totalLoad++
	w.channels[r] = struct{}{}
	if w.idleTimer != nil {
		w.idleTimer.Stop()
	}
	// Off the loop: opening the channel queues the invoke on the worker's connection,
	// and a worker that stopped reading it would otherwise stall the whole app. The
	// worker's sender takes it; its buffer holds a worker's whole concurrency, so this
	// only falls back to a goroutine of its own for huge concurrency settings.
	select {
	case w.invokes <- r:
	default:
		s := w.session
		e.deliver(func() { e.open(w, s, r) })
	}
}

// open sends the invoke of r to w and attaches the request to the new channel. It runs
// on w's sender (or a goroutine of its own), never on the loop.
func (e *engine) open(w *worker, s *rpc.Session, r *request) {
	tx, err := s.Open(invokeMethod, r.args, r.headers, r.trace, (*workerSide)(r))
	if err != nil {
		e.post(func() { e.openFailed(w, r, err) })
		return
	}
	if !r.attach(tx) {
		tx.Abandon()
		tx.Error(wire(ErrClientGone))
		e.post(func() { e.release(r) })
	}
}

// openFailed puts back an event whose worker's connection is gone, and retires the worker.
func (e *engine) openFailed(w *worker, r *request, err error) {
	e.release(r)
	r.mu.Lock()
	queued := r.state == reqQueued
	r.mu.Unlock()
	if queued && !e.stopping {
		e.queue = append([]*request{r}, e.queue...)
	}
	w.shutdown(fmt.Errorf("%w: worker %s: %v", ErrControlIPC, w.uuid, err))
	e.rebalanceEvents()
}

// release frees a request's slot on its worker. Safe to call more than once.
func (e *engine) release(r *request) {
	w := r.w
	if w == nil {
		return
	}
	r.w = nil
	delete(w.channels, r)
	w.load--
	e.totalLoad--
	e.stats.observe(e.now().Sub(r.birth))
	if w.shut {
		e.rebalanceEvents()
		return
	}
	if w.load == 0 {
		w.idleSince = e.now()
		if w.state == stateSealing {
			w.terminate(w.reason)
		} else {
			w.armIdle()
		}
	}
	e.rebalanceEvents()
}

// poolSize counts the workers that are or will be serving: not sealing, not leaving.
func (e *engine) poolSize() (n int) {
	for _, w := range e.workers {
		if w.state <= stateActive {
			n++
		}
	}
	return n
}

// rebalanceWorkers grows (or, under control(N), pins) the pool (plugins.md §2.12).
func (e *engine) rebalanceWorkers() {
	if e.stopping || e.now().Before(e.blockedUntil) {
		return
	}
	p := e.profile
	pool := e.poolSize()
	if e.target > 0 {
		n := min(e.target, p.PoolLimit)
		for ; pool < n; pool++ {
			e.spawn()
		}
		var active []*worker
		for _, w := range e.workers {
			if w.state == stateActive {
				active = append(active, w)
			}
		}
		sort.Slice(active, func(i, j int) bool { return active[i].load < active[j].load })
		for i := 0; len(active)-i > n; i++ {
			active[i].seal(fmt.Errorf("%w: the pool is pinned to %d workers", ErrSealing, n))
		}
		return
	}
	target := autoTarget(p, len(e.queue), pool, e.totalLoad)
	for ; pool < target && len(e.workers) < p.PoolLimit; pool++ {
		e.spawn()
	}
}

// autoTarget is the pool size automatic mode aims at (plugins.md §2.12): with a queue
// limit, one worker per grow-threshold queued events; without, enough workers for the
// events the free slots cannot take. Clamped to [1, pool-limit]; no queue, no target.
func autoTarget(p Profile, queued, pool, load int) int {
	if queued == 0 {
		return 0 // only demand grows the pool: no traffic, no workers
	}
	var target int
	if p.QueueLimit > 0 {
		target = queued / p.GrowThreshold
	} else {
		free := pool*p.Concurrency - load
		target = pool
		if queued > free {
			target += (queued - free + p.Concurrency - 1) / p.Concurrency
		}
	}
	return min(max(target, 1), p.PoolLimit)
}

// nextBackoff is the crash back-off after a crash at now, given the previous one.
func nextBackoff(prev time.Duration, lastCrash, now time.Time) time.Duration {
	if !lastCrash.IsZero() && now.Sub(lastCrash) < maxBackoff && prev > 0 {
		return min(2*prev, maxBackoff)
	}
	return minBackoff
}

// backOff blocks spawns after a crash: 1 s, doubling up to 32 s while crashes come less
// than 32 s apart.
func (e *engine) backOff() {
	now := e.now()
	e.backoff = nextBackoff(e.backoff, e.lastCrash, now)
	e.lastCrash = now
	e.blockedUntil = now.Add(e.backoff)
	e.after(e.backoff, e.rebalanceWorkers)
}

// control pins the pool to n workers (n > 0) or returns to automatic sizing.
func (e *engine) control(n int64) {
	if n < 0 {
		n = 0
	}
	e.target = int(min(n, 1<<20))
	e.rebalanceWorkers()
}

func (e *engine) spawn() {
	now := e.now()
	id := newUUID()
	w := &worker{e: e, uuid: id, state: stateSpawning, channels: map[*request]struct{}{}, born: now}
	var outLog *slog.Logger
	if e.profile.LogOutput {
		outLog = e.log.With("worker_id", id)
	}
	w.out = newOutput(e.app, id, e.profile.CrashlogLimit, e.deps.Output, outLog)
	e.workers[id] = w
	e.stats.spawned++
	var locs []rpc.Endpoint
	if e.deps.Locator != nil {
		locs = e.deps.Locator()
	}
	if len(locs) == 0 {
		w.shutdown(fmt.Errorf("%w: cannot pass --locator to worker %s", ErrEmptyLocator, id))
		e.finalize(w)
		return
	}
	spec := e.spec(id, locs, w.out)
	w.arm(e.profile.SpawnTimeout, func() {
		w.shutdown(fmt.Errorf("%w: the isolate did not start worker %s within %s", ErrSpawnTimeout, id, e.profile.SpawnTimeout))
	})
	ok := e.group.Go(func(ctx context.Context) {
		sctx, cancel := context.WithTimeout(ctx, e.profile.SpawnTimeout+time.Second)
		proc, err := e.iso.Spawn(sctx, spec)
		cancel()
		e.post(func() { w.spawned(proc, err) }) // the loop waits for w: it cannot have ended
	})
	if !ok {
		w.shutdown(ErrShuttingDown)
		e.finalize(w)
	}
	e.log.Debug("spawning worker", "worker_id", id)
}

// spec is the isolate's view of a worker (plugins.md §2.10).
func (e *engine) spec(id string, locs []rpc.Endpoint, out *output) SpawnSpec {
	exe := e.manifest.Slave
	if !filepath.IsAbs(exe) {
		exe = filepath.Join(e.dir, exe)
	}
	ls := make([]string, len(locs))
	for i, l := range locs {
		ls[i] = l.String()
	}
	keys := make([]string, 0, len(e.manifest.Environment))
	for k := range e.manifest.Environment {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	appEnv := make([]string, 0, len(keys))
	for _, k := range keys {
		appEnv = append(appEnv, k+"="+e.manifest.Environment[k])
	}
	env := append(os.Environ(), appEnv...)
	return SpawnSpec{
		App: e.app, UUID: id, Dir: e.dir, Executable: exe, Env: env, AppEnv: appEnv, Output: out,
		Args: []string{
			"--app", e.app,
			"--endpoint", e.endpoint,
			"--locator", strings.Join(ls, ","),
			"--protocol", "1",
			"--uuid", id,
		},
	}
}

// wait reports the process's exit to the loop.
func (e *engine) wait(w *worker) {
	proc := w.proc
	ok := e.group.Go(func(context.Context) {
		err := proc.Wait()
		e.post(func() { w.exit(err) })
	})
	if !ok { // cannot happen while the loop runs, but never leave a process behind
		proc.Kill()
	}
}

// finalize forgets a worker that has exited (or never started) and writes its crash log.
func (e *engine) finalize(w *worker) {
	if _, ok := e.dying[w]; !ok {
		return
	}
	delete(e.dying, w)
	if !normal(w.reason) {
		e.crashlog(w)
	}
	e.rebalanceWorkers()
}

// handshake binds a connection that sent handshake(uuid).
func (e *engine) handshake(uuid string, s *rpc.Session, control *rpc.Tx) {
	w, ok := e.workers[uuid]
	if !ok || e.stopping || !w.handshaken && !w.handshake(s, control) {
		e.log.Warn("rejected a worker handshake", "worker_id", uuid)
		s.Close()
		return
	}
	if w.session != s {
		s.Close()
	}
}

// byConn finds the worker bound to s.
func (e *engine) byConn(uuid string, s *rpc.Session) *worker {
	if w, ok := e.workers[uuid]; ok && w.session == s {
		return w
	}
	return nil
}

// updatePublish publishes the app's service once publish-on workers are active and
// withdraws it under unpublish-under.
func (e *engine) updatePublish() {
	if e.publish == nil || e.stopping {
		return
	}
	active := 0
	for _, w := range e.workers {
		if w.state == stateActive {
			active++
		}
	}
	switch {
	case e.withdraw == nil && active >= e.profile.PublishOn:
		withdraw, err := e.publish()
		if err != nil {
			e.log.Error("publishing the app failed", "err", err)
			return
		}
		e.withdraw = withdraw
	case e.withdraw != nil && active < e.profile.UnpublishUnder:
		e.withdraw()
		e.withdraw = nil
	}
}

// newUUID returns a random lowercase RFC 4122 uuid.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
