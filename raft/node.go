package raft

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	hraft "github.com/hashicorp/raft"
)

// LeaderHandler serves a LeaderCall on the leader. Domain errors (a lease that is gone)
// belong in the reply; a returned error reaches the caller as ErrRemote with its text.
type LeaderHandler func(ctx context.Context, payload []byte) ([]byte, error)

// Node is one server of the raft group.
type Node struct {
	cfg      Config
	log      *slog.Logger
	fsm      *adapter
	handlers map[string]LeaderHandler

	running  atomic.Bool
	started  chan struct{} // closed once r and the goroutines below exist
	stopping chan struct{} // closed when Run begins to shut down: new work is refused
	stopped  chan struct{} // closed when Run has returned

	// Set before started is closed, read-only afterwards.
	r       *hraft.Raft
	logs    hraft.LogStore
	fresh   bool // started with no state and did not bootstrap: must be added by Join
	snaps   hraft.SnapshotStore
	addr    string
	peers   *peerPool
	bg      context.Context // background work: cancelled during shutdown
	wg      sync.WaitGroup  // every goroutine the Node starts
	props   chan *proposal  // to the batcher
	flight  chan *inflight  // from the batcher to the waiter
	notices *notices        // tell the followers the commit index (notice.go)

	// mu guards the following fields.
	mu       sync.Mutex
	lead     leadState
	failing  map[string]time.Time // on the leader: servers whose heartbeats fail → last contact
	seen     map[string]time.Time // on the leader: when each server was first seen in the configuration
	noLeader time.Time            // when this server last had no leader (zero while it has one)

	verifyMu      sync.Mutex
	verifyWaiting []chan error
	verifyRunning bool
}

// leadState is this server's view of the leadership.
type leadState struct {
	leader     bool   // raft says this server leads
	ready      bool   // ... and its term-start entry is applied: it may serve
	term       uint64 // the term it leads in
	leaderID   string
	leaderAddr string
	changed    chan struct{} // closed (and replaced) at every change of the above
}

// New validates cfg. It starts nothing and touches no file. Register leader handlers
// with HandleLeader before calling Run.
func New(cfg Config, fsm FSM, log *slog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if fsm == nil {
		return nil, errors.New("raft: nil FSM")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "raft")
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	return &Node{
		cfg:      cfg,
		log:      log,
		fsm:      newAdapter(fsm, log),
		handlers: map[string]LeaderHandler{},
		started:  make(chan struct{}),
		stopping: make(chan struct{}),
		stopped:  make(chan struct{}),
		lead:     leadState{changed: make(chan struct{})},
		failing:  map[string]time.Time{},
		seen:     map[string]time.Time{},
	}, nil
}

// HandleLeader registers h for LeaderCall(method). Call it before Run.
func (n *Node) HandleLeader(method string, h LeaderHandler) {
	if n.running.Load() {
		panic("raft: HandleLeader after Run")
	}
	n.handlers[method] = h
}

// ID is this server's id.
func (n *Node) ID() string { return n.cfg.ID }

// Addr is the advertised raft address, once Run has started.
func (n *Node) Addr() string {
	select {
	case <-n.started:
		return n.addr
	default:
		return ""
	}
}

// Fresh reports, once Started, whether this server began with no state and did not
// bootstrap: it is not part of any cluster until an existing member adds it (Join).
func (n *Node) Fresh() bool {
	<-n.started
	return n.fresh
}

// Started is closed once Run is serving: the raft port listens and the other methods
// work.
func (n *Node) Started() <-chan struct{} { return n.started }

// Run opens the stores, starts raft and serves until ctx ends; then, with
// LeaveOnShutdown, it leaves the cluster, and it stops everything it started before it
// returns. A server with no state bootstraps a new cluster if Config.Bootstrap is set;
// otherwise it waits to be added (see Join).
func (n *Node) Run(ctx context.Context) (err error) {
	if !n.running.CompareAndSwap(false, true) {
		return errors.New("raft: Run called twice")
	}
	defer close(n.stopped)
	cfg := n.cfg
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("raft: data dir: %w", err)
	}
	hlog := newHCLogger(n.log)

	store, err := openLogStore(cfg.Dir, hlog, n.log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := store.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	logs, err := hraft.NewLogCache(512, store)
	if err != nil {
		return err
	}
	snaps, err := hraft.NewFileSnapshotStoreWithLogger(cfg.Dir, cfg.SnapshotRetain, hlog.Named("snapshots"))
	if err != nil {
		return fmt.Errorf("raft: snapshot store: %w", err)
	}

	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Bind); err != nil {
			return fmt.Errorf("raft: listen on %s: %w", cfg.Bind, err)
		}
	}
	addr := cfg.Advertise
	if addr == "" {
		addr = ln.Addr().String()
		if ta, ok := ln.Addr().(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
			ln.Close()
			return fmt.Errorf("raft: bound to %s: set an advertise address other servers can dial", addr)
		}
	}

	bg, cancel := context.WithCancel(context.Background())
	defer cancel()
	n.bg = bg
	n.addr = addr
	n.snaps = snaps
	n.peers = newPeerPool(cfg.Dial, func(byte) int { return cfg.MaxCommandSize + 64<<20 })
	mux := newMuxListener(ln, tcpAddr(addr), cfg.Dial, n.servePeer, n.log)
	defer mux.close()
	n.wg.Go(mux.run)
	n.notices = newNotices(bg, &n.wg)
	stream := newStreamLayer(mux)
	trans := n.notices.transport(hraft.NewNetworkTransportWithConfig(&hraft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hlog.Named("transport"),
	}))
	defer trans.Close()

	// Ten slots: hashicorp blocks on this channel, and leadership flips are rare.
	notify := make(chan bool, 10)
	rc := hraft.DefaultConfig()
	rc.LocalID = hraft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.MaxAppendEntries = 256
	rc.ShutdownOnRemove = false // a removed server stays up and may join again
	rc.NotifyCh = notify
	rc.Logger = hlog

	hasState, err := hraft.HasExistingState(logs, store, snaps)
	if err != nil {
		return fmt.Errorf("raft: inspect state: %w", err)
	}
	if !hasState && cfg.Bootstrap {
		boot := hraft.Configuration{Servers: []hraft.Server{{Suffrage: hraft.Voter, ID: rc.LocalID, Address: hraft.ServerAddress(addr)}}}
		if err := hraft.BootstrapCluster(rc, logs, store, snaps, trans, boot); err != nil {
			return fmt.Errorf("raft: bootstrap: %w", err)
		}
		n.log.Info("bootstrapped a new cluster", "id", cfg.ID, "addr", addr)
	}
	r, err := hraft.NewRaft(rc, n.fsm, logs, store, snaps, trans)
	if err != nil {
		return fmt.Errorf("raft: start: %w", err)
	}
	n.r = r
	n.logs = logs
	n.fresh = !hasState && !cfg.Bootstrap
	// Observations are dropped when this channel is full, so the leadership loop also
	// resyncs on a ticker; 256 covers a burst of heartbeat failures.
	obs := make(chan hraft.Observation, 256)
	observer := hraft.NewObserver(obs, false, func(o *hraft.Observation) bool {
		switch o.Data.(type) {
		case hraft.LeaderObservation, hraft.FailedHeartbeatObservation, hraft.ResumedHeartbeatObservation, hraft.PeerObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(observer)
	// Proposals queue here while the batcher waits for raft to take the previous
	// entry; a full MaxBatch ahead keeps it fed without unbounded memory.
	n.props = make(chan *proposal, cfg.MaxBatch)
	// Entries handed to raft and not yet committed: enough to keep the disk and the
	// followers busy (pipelining), few enough to bound the commands in flight.
	n.flight = make(chan *inflight, 64)
	n.wg.Go(func() { n.watchLeadership(bg, notify, obs) })
	n.wg.Go(func() { n.batch(bg) })
	// Not in n.wg: see the end of Run.
	awaited := make(chan struct{})
	go func() {
		defer close(awaited)
		n.await(bg)
	}()
	n.wg.Go(func() { n.membership(bg) })
	close(n.started)
	n.log.Info("raft started", "id", cfg.ID, "addr", addr, "existing_state", hasState)

	<-ctx.Done()
	close(n.stopping)
	if cfg.LeaveOnShutdown {
		lctx, lcancel := context.WithTimeout(context.Background(), 2*cfg.ElectionTimeout+5*time.Second)
		if err := n.leave(lctx); err != nil {
			n.log.Warn("could not leave the cluster", "err", err)
		}
		lcancel()
	}
	r.DeregisterObserver(observer)
	// Shutdown's future waits for raft's goroutines; closing the outgoing connections
	// first ends the requests they may have in flight to peers that do not answer. The
	// notice pipelines must keep forwarding until then (raft's pipeline waits for them).
	shut := r.Shutdown()
	stream.dialed.closeAll()
	serr := shut.Error()
	n.notices.stop()
	cancel()
	mux.close()
	n.peers.close()
	n.wg.Wait()
	// hashicorp drops the answers of committed entries still queued for its FSM when it
	// shuts down, and such a future's Error blocks forever. Raft has stopped for good
	// here, so every other future is answered and await ends at once; one waiting on a
	// dropped answer is left behind (one goroutine) rather than hang the stop, and its
	// proposers get ErrStopped when Run returns.
	select {
	case <-awaited:
	case <-time.After(time.Second):
		n.log.Warn("raft stopped without answering an entry it had committed; its proposers are told the node stopped")
	}
	n.log.Info("raft stopped", "id", cfg.ID)
	if serr != nil {
		return fmt.Errorf("raft: shutdown: %w", serr)
	}
	return nil
}

// wait blocks until Run has started, failing if ctx ends or the node stops first.
func (n *Node) wait(ctx context.Context) error {
	select {
	case <-n.started:
	default:
		select {
		case <-n.started:
		case <-n.stopping:
			return ErrStopped
		case <-ctx.Done():
			return fmt.Errorf("%w (not started yet): %w", ErrStopped, ctx.Err())
		}
	}
	select {
	case <-n.stopping:
		return ErrStopped
	default:
		return nil
	}
}

// Leadership reports whether this server leads and may serve as leader now, and a
// channel closed at the next change.
func (n *Node) Leadership() (bool, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lead.leader && n.lead.ready, n.lead.changed
}

// Leader is the id and raft address of the current leader, as this server knows it
// (empty if none).
func (n *Node) Leader() (id, addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lead.leaderID, n.lead.leaderAddr
}

func (n *Node) leadership() leadState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lead
}

// changeLocked publishes a change of n.lead. n.mu must be held.
func (n *Node) changeLocked() {
	close(n.lead.changed)
	n.lead.changed = make(chan struct{})
}

// watchLeadership keeps n.lead and the leader's health table current.
func (n *Node) watchLeadership(ctx context.Context, notify <-chan bool, obs <-chan hraft.Observation) {
	tick := time.NewTicker(n.cfg.HeartbeatTimeout / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case leader := <-notify:
			n.onLeader(leader)
		case o := <-obs:
			n.observe(o)
		case <-tick.C:
			n.syncLeader()
		}
	}
}

func (n *Node) onLeader(leader bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if leader {
		term := n.r.CurrentTerm()
		n.lead.leader, n.lead.ready, n.lead.term = true, false, term
		n.lead.leaderID, n.lead.leaderAddr = n.cfg.ID, n.addr
		clear(n.failing)
		clear(n.seen)
		n.log.Info("leading", "term", term)
		n.wg.Go(func() { n.startTerm(term) })
	} else {
		if n.lead.leader {
			n.log.Info("no longer leading", "term", n.lead.term)
		}
		n.lead.leader, n.lead.ready = false, false
		addr, id := n.r.LeaderWithID()
		n.lead.leaderID, n.lead.leaderAddr = string(id), string(addr)
	}
	n.changeLocked()
}

// startTerm appends an entry with no command at the start of a term. Once it is applied
// every entry of earlier terms is applied here too, and every entry from here on is one
// the FSM sees, so the commit index is an index WaitApplied can reach: only then does
// the leader serve.
func (n *Node) startTerm(term uint64) {
	err := n.r.Apply(appendEnvelope(nil, nil), 0).Error()
	n.mu.Lock()
	defer n.mu.Unlock()
	if err != nil || !n.lead.leader || n.lead.term != term {
		return
	}
	n.lead.ready = true
	n.changeLocked()
}

func (n *Node) observe(o hraft.Observation) {
	switch d := o.Data.(type) {
	case hraft.LeaderObservation:
		n.syncLeader()
	case hraft.FailedHeartbeatObservation:
		n.mu.Lock()
		if _, ok := n.failing[string(d.PeerID)]; !ok {
			since := d.LastContact
			if since.IsZero() {
				since = time.Now()
			}
			n.failing[string(d.PeerID)] = since
			n.log.Warn("server not answering", "server", string(d.PeerID), "last_contact", since)
		}
		n.mu.Unlock()
	case hraft.ResumedHeartbeatObservation:
		n.mu.Lock()
		if _, ok := n.failing[string(d.PeerID)]; ok {
			delete(n.failing, string(d.PeerID))
			n.log.Info("server answering again", "server", string(d.PeerID))
		}
		n.mu.Unlock()
	case hraft.PeerObservation:
		if d.Removed {
			n.mu.Lock()
			delete(n.failing, string(d.Peer.ID))
			delete(n.seen, string(d.Peer.ID))
			n.mu.Unlock()
		}
	}
}

// syncLeader reads the leader from raft (observations can be dropped).
func (n *Node) syncLeader() {
	addr, id := n.r.LeaderWithID()
	isLeader := n.r.State() == hraft.Leader
	n.mu.Lock()
	defer n.mu.Unlock()
	changed := false
	if string(id) != n.lead.leaderID || string(addr) != n.lead.leaderAddr {
		n.lead.leaderID, n.lead.leaderAddr = string(id), string(addr)
		changed = true
	}
	if !isLeader && n.lead.leader {
		n.lead.leader, n.lead.ready = false, false
		changed = true
	}
	switch {
	case id != "":
		n.noLeader = time.Time{}
	case n.noLeader.IsZero():
		n.noLeader = time.Now()
	}
	if changed {
		n.changeLocked()
	}
}

// retry waits before the next attempt of an operation that found no usable leader: until
// the leadership changes or a short back-off passes.
func (n *Node) retry(ctx context.Context, attempt int, changed <-chan struct{}) error {
	d := min(10*time.Millisecond<<min(attempt, 6), n.cfg.ElectionTimeout)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-changed:
		return nil
	case <-t.C:
		return nil
	case <-n.stopping:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errDial marks a request that never left this server.
var errDial = errors.New("raft: peer unreachable")

// retryable reports whether err means "nothing happened, ask again (elsewhere)".
func retryable(err error) bool {
	return errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader) || errors.Is(err, errDial)
}

// toLeader runs an operation on the leader: local when this server leads and is ready,
// forwarded over the peer protocol otherwise, again while the answer is "not the leader"
// or the leader cannot be dialled. idempotent operations are also retried when a
// connection is lost mid-request.
func (n *Node) toLeader(ctx context.Context, idempotent bool, local func() ([]byte, error), op byte, payload []byte) ([]byte, error) {
	if err := n.wait(ctx); err != nil {
		return nil, err
	}
	var lastErr error = ErrNoLeader
	for attempt := 0; ; attempt++ {
		st := n.leadership()
		var (
			out []byte
			err error
		)
		switch {
		case st.leader && st.ready:
			out, err = local()
		case st.leaderAddr != "" && st.leaderAddr != n.addr:
			out, err = n.peers.call(ctx, st.leaderAddr, op, payload)
			if err != nil && idempotent && errors.Is(err, errConnLost) {
				err = fmt.Errorf("%w: %w", errDial, err)
			}
		default:
			err = ErrNoLeader
		}
		if err == nil || !retryable(err) {
			return out, err
		}
		lastErr = err
		if werr := n.retry(ctx, attempt, st.changed); werr != nil {
			if errors.Is(werr, ErrStopped) {
				return nil, ErrStopped
			}
			return nil, fmt.Errorf("%w (last: %v)", ErrNoLeader, lastErr)
		}
	}
}

// Propose replicates cmd and returns the FSM's result for it once this server has
// applied it too, so a read here afterwards sees it. Followers forward to the leader;
// concurrent proposals share log entries.
//
// Errors: ErrTooLarge, ErrStopped, ErrNoLeader (nothing applied), ErrIndeterminate
// (the command may or may not be applied: leadership lost, connection lost, or ctx
// ended while waiting).
func (n *Node) Propose(ctx context.Context, cmd []byte) ([]byte, error) {
	if len(cmd) > n.cfg.MaxCommandSize {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(cmd), n.cfg.MaxCommandSize)
	}
	var index uint64
	out, err := n.toLeader(ctx, false, func() ([]byte, error) {
		idx, res, err := n.proposeLocal(ctx, cmd)
		index = idx
		return res, err
	}, opApply, cmd)
	if err != nil {
		if errors.Is(err, errConnLost) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %w", ErrIndeterminate, err)
		}
		return nil, err
	}
	if index == 0 { // forwarded: the reply carries the index
		if len(out) < 8 {
			return nil, fmt.Errorf("%w: short reply from the leader", ErrIndeterminate)
		}
		index, out = binary.BigEndian.Uint64(out), out[8:]
	}
	if err := n.WaitApplied(ctx, index); err != nil {
		return nil, fmt.Errorf("%w: applied at %d, not yet here: %w", ErrIndeterminate, index, err)
	}
	return out, nil
}

// ReadIndex returns an index covering every write acknowledged anywhere before the
// call: the leader's commit index. With linearizable set the leader first confirms with
// a quorum that it still leads, so a deposed leader cannot answer. Wait for the index
// with WaitApplied before reading local state.
func (n *Node) ReadIndex(ctx context.Context, linearizable bool) (uint64, error) {
	flag := []byte{0}
	if linearizable {
		flag[0] = 1
	}
	out, err := n.toLeader(ctx, true, func() ([]byte, error) { return n.readIndexLocal(ctx, linearizable) }, opReadIndex, flag)
	if err != nil {
		return 0, err
	}
	if len(out) != 8 {
		return 0, fmt.Errorf("raft: bad read index reply of %d bytes", len(out))
	}
	return binary.BigEndian.Uint64(out), nil
}

func (n *Node) readIndexLocal(ctx context.Context, linearizable bool) ([]byte, error) {
	if ok, _ := n.Leadership(); !ok {
		return nil, ErrNotLeader
	}
	idx := n.stateIndex(n.r.CommitIndex())
	if linearizable {
		if err := n.verifyLeader(ctx); err != nil {
			return nil, err
		}
	}
	return binary.BigEndian.AppendUint64(nil, idx), nil
}

// stateIndex returns the last entry at or below the committed index idx that carries
// commands. Entries above it (a term's start, configuration changes, no-ops) change no
// state, so reading at it is reading at idx; and followers learn at once that a command
// entry is committed (the leader's commit notices), not so for the others.
func (n *Node) stateIndex(idx uint64) uint64 {
	var l hraft.Log
	for i := idx; i > 0; i-- {
		if err := n.logs.GetLog(i, &l); err != nil {
			return i // compacted into a snapshot: at or below what every server holds
		}
		if l.Type == hraft.LogCommand && !isEmptyEnvelope(l.Data) {
			return i
		}
		if idx-i >= 1024 { // a long run of no-ops: stop looking, the index is safe anyway
			return i
		}
	}
	return idx
}

// verifyLeader confirms leadership with a quorum. Concurrent callers share one round:
// a caller joins the round that starts after it arrived, never one already running
// (whose answer could predate the call).
func (n *Node) verifyLeader(ctx context.Context) error {
	ch := make(chan error, 1) // the round's answer, sent without blocking
	n.verifyMu.Lock()
	n.verifyWaiting = append(n.verifyWaiting, ch)
	if !n.verifyRunning {
		n.verifyRunning = true
		n.wg.Go(n.verifyRounds)
	}
	n.verifyMu.Unlock()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (n *Node) verifyRounds() {
	for {
		n.verifyMu.Lock()
		batch := n.verifyWaiting
		n.verifyWaiting = nil
		if len(batch) == 0 {
			n.verifyRunning = false
			n.verifyMu.Unlock()
			return
		}
		n.verifyMu.Unlock()
		err := n.r.VerifyLeader().Error()
		if errors.Is(err, hraft.ErrNotLeader) || errors.Is(err, hraft.ErrLeadershipLost) {
			err = fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		for _, ch := range batch {
			ch <- err
		}
	}
}

// WaitApplied blocks until this server's FSM has applied index.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	for {
		if n.fsm.applied.Load() >= index {
			return nil
		}
		ch := n.fsm.waitChan()
		if n.fsm.applied.Load() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stopped:
			return ErrStopped
		}
	}
}

// AppliedIndex is the last index this server's FSM has applied.
func (n *Node) AppliedIndex() uint64 { return n.fsm.applied.Load() }

// LeaderCall sends payload to the handler registered for method on the leader and
// returns its reply. It is retried on the new leader when leadership moves. Errors:
// ErrUnknownMethod, ErrRemote (the handler failed), ErrNoLeader, ErrStopped, or a lost
// connection (the handler may have run).
func (n *Node) LeaderCall(ctx context.Context, method string, payload []byte) ([]byte, error) {
	req := binary.AppendUvarint(nil, uint64(len(method)))
	req = append(append(req, method...), payload...)
	return n.toLeader(ctx, false, func() ([]byte, error) { return n.leaderCallLocal(ctx, method, payload) }, opLeaderCall, req)
}

func (n *Node) leaderCallLocal(ctx context.Context, method string, payload []byte) ([]byte, error) {
	if ok, _ := n.Leadership(); !ok {
		return nil, ErrNotLeader
	}
	h, ok := n.handlers[method]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownMethod, method)
	}
	out, err := h(ctx, payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrRemote, method, err)
	}
	return out, nil
}

// servePeer serves one peer connection until it fails or the node stops.
func (n *Node) servePeer(c net.Conn, r *bufio.Reader) {
	var (
		wmu     sync.Mutex
		writers atomic.Int32
		w       = bufio.NewWriterSize(c, 64<<10)
		wg      sync.WaitGroup
	)
	defer wg.Wait()
	// Bounds the requests of one connection in progress at once; a peer that sends
	// more waits (TCP backpressure).
	sem := make(chan struct{}, 1024)
	limit := func(op byte) int {
		if op == opRestore {
			return int(n.cfg.MaxSnapshotSize)
		}
		return n.cfg.MaxCommandSize + 4096
	}
	for {
		op, id, payload, err := readFrame(r, limit)
		if err != nil {
			return
		}
		select {
		case sem <- struct{}{}:
		case <-n.bg.Done():
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			out, err := n.handlePeer(op, payload)
			rop := opOK
			if err != nil {
				rop = opErr
				out = append([]byte{errorCode(err)}, err.Error()...)
			}
			writers.Add(1)
			wmu.Lock()
			w.Write(appendFrameHeader(nil, rop, id, len(out)))
			w.Write(out)
			if writers.Add(-1) == 0 {
				if err := w.Flush(); err != nil {
					c.Close()
				}
			}
			wmu.Unlock()
		})
	}
}

func (n *Node) handlePeer(op byte, payload []byte) ([]byte, error) {
	select {
	case <-n.started:
	case <-n.stopping:
		return nil, ErrStopped
	}
	ctx := n.bg
	switch op {
	case opApply:
		if ok, _ := n.Leadership(); !ok {
			return nil, ErrNotLeader
		}
		idx, res, err := n.proposeLocal(ctx, payload)
		if err != nil {
			return nil, err
		}
		return append(binary.BigEndian.AppendUint64(nil, idx), res...), nil
	case opReadIndex:
		return n.readIndexLocal(ctx, len(payload) == 1 && payload[0] == 1)
	case opLeaderCall:
		l, k := binary.Uvarint(payload)
		if k <= 0 || l > uint64(len(payload)-k) {
			return nil, errors.New("raft: malformed leader call")
		}
		return n.leaderCallLocal(ctx, string(payload[k:k+int(l)]), payload[k+int(l):])
	case opJoin:
		return nil, n.joinLocal(payload)
	case opJoinAny:
		var req joinRequest
		if err := json.Unmarshal(payload, &req); err != nil {
			return nil, fmt.Errorf("raft: malformed join request: %v", err)
		}
		jctx, cancel := context.WithTimeout(ctx, 4*n.cfg.ElectionTimeout)
		defer cancel()
		return nil, n.Join(jctx, req.ID, req.Address)
	case opRemove:
		return nil, n.removeLocal(payload)
	case opMembers:
		return n.membersLocal()
	case opRestore:
		return nil, n.restoreLocal(ctx, payload)
	}
	return nil, fmt.Errorf("raft: unknown peer op %d", op)
}
