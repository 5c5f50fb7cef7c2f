package unicorn

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// Leases, as etcd keeps them: the store holds each lease's id, TTL and ephemeral nodes,
// and nothing about time; deadlines live only on the leader, in memory.
//
//	leader      on election: every lease's deadline := now + TTL
//	            keepalive (LeaderCall KeepaliveMethod): deadline := now + TTL
//	            every ExpiryInterval: propose revoke of the leases past their deadline
//
//	owner host  keeps alive the leases it owns (its host lease, its connections'
//	            session leases) in one keeper loop, batching ids, every TTL/3;
//	            local deadline := send time of the last keepalive that succeeded
//	                              + TTL - TTL/4
//	            past the local deadline the lease is lost: what relied on it (locks)
//	            ends with ErrConnectionLoss, before any leader can have expired it.
//
// A leader's deadline for a lease is never earlier than send time + TTL of the last
// keepalive the owner counted, and a new leader starts from now + TTL: so an owner gives
// a lease up before the cluster does, and two lock holders never overlap (given clocks
// that run at about the same rate).

// keeperTick is how often the keeper loop looks at its leases. It must stay well below
// the safety margin (MinLeaseTTL/4).
const keeperTick = 100 * time.Millisecond

// maxKeepaliveBatch bounds the ids of one keepalive call.
const maxKeepaliveBatch = 4096

// margin is how long before its TTL runs out an owner gives a lease up.
func margin(ttl time.Duration) time.Duration { return ttl / 4 }

// ownedLease is a lease this host keeps alive.
type ownedLease struct {
	id   LeaseID
	ttl  time.Duration
	lost chan struct{} // closed when the lease is lost or released: rely on it no more

	// holders counts the lock holders relying on the lease (enter, leave); quiet holds
	// the channels closed when it drops to zero. Guarded by hmu.
	hmu     sync.Mutex
	holders int
	quiet   []chan struct{}

	// guarded by keeper.mu
	sent     time.Time // when the last keepalive (or the grant) was sent; zero: due now
	acked    time.Time // send time of the last keepalive that succeeded (or the grant)
	deadline time.Time // the local deadline
	gone     bool
}

// keeper is the set of leases this host keeps alive.
type keeper struct {
	mu sync.Mutex
	// mu guards the following fields, and the guarded fields of every ownedLease.
	leases  map[LeaseID]*ownedLease
	calling bool // a keepalive call is in flight
}

func newOwned(id LeaseID, ttl time.Duration, sent time.Time) *ownedLease {
	return &ownedLease{id: id, ttl: ttl, lost: make(chan struct{}), sent: sent, acked: sent, deadline: sent.Add(ttl - margin(ttl))}
}

func (k *keeper) add(l *ownedLease) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.leases[l.id] = l
}

func (k *keeper) ids() []LeaseID {
	k.mu.Lock()
	defer k.mu.Unlock()
	ids := make([]LeaseID, 0, len(k.leases))
	for id := range k.leases {
		ids = append(ids, id)
	}
	return ids
}

// drop stops keeping l alive and closes its lost channel; it reports whether l was kept.
func (k *keeper) drop(l *ownedLease) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.dropLocked(l)
}

// dropLocked is drop; k.mu must be held.
func (k *keeper) dropLocked(l *ownedLease) bool {
	if l.gone {
		return false
	}
	l.gone = true
	delete(k.leases, l.id)
	close(l.lost)
	return true
}

// enter registers a lock holder relying on l; leave, once it no longer does (having told
// its client when it lost the lock).
func (l *ownedLease) enter() {
	l.hmu.Lock()
	l.holders++
	l.hmu.Unlock()
}

func (l *ownedLease) leave() {
	l.hmu.Lock()
	defer l.hmu.Unlock()
	if l.holders--; l.holders == 0 {
		for _, c := range l.quiet {
			close(c)
		}
		l.quiet = nil
	}
}

// quieted is closed once no lock holder relies on l.
func (l *ownedLease) quieted() <-chan struct{} {
	c := make(chan struct{})
	l.hmu.Lock()
	defer l.hmu.Unlock()
	if l.holders == 0 {
		close(c)
	} else {
		l.quiet = append(l.quiet, c)
	}
	return c
}

// expiry is when the cluster will have expired l for sure: TTL after its last
// acknowledged keepalive, with the margin again for the leader's own delays.
func (k *keeper) expiry(l *ownedLease) time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return l.acked.Add(l.ttl + margin(l.ttl))
}

// due drops the leases past their local deadline and returns them, and, when no call is
// in flight, the leases whose keepalive is due, marking the call as started.
func (k *keeper) due(now time.Time) (lost, batch []*ownedLease) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, l := range k.leases {
		if !now.Before(l.deadline) {
			lost = append(lost, l)
			continue
		}
		if !k.calling && len(batch) < maxKeepaliveBatch && now.Sub(l.sent) >= l.ttl/3 {
			batch = append(batch, l)
		}
	}
	for _, l := range lost {
		k.dropLocked(l)
	}
	for _, l := range batch {
		l.sent = now
	}
	if len(batch) > 0 {
		k.calling = true
	}
	return lost, batch
}

// keepaliveResult is the outcome of one keepalive call.
type keepaliveResult struct {
	leases []*ownedLease
	sent   time.Time
	ttls   []int64 // by lease; 0: not found
	err    error
}

// settle records a keepalive's outcome and returns the leases the leader no longer has.
func (k *keeper) settle(r keepaliveResult) (lost []*ownedLease) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calling = false
	for i, l := range r.leases {
		switch {
		case l.gone:
		case r.err != nil:
			l.sent = time.Time{} // retry at the next tick; the deadline still holds
		case r.ttls[i] <= 0:
			k.dropLocked(l)
			lost = append(lost, l)
		default:
			if d := r.sent.Add(l.ttl - margin(l.ttl)); d.After(l.deadline) {
				l.deadline, l.acked = d, r.sent
			}
		}
	}
	return lost
}

// keeperLoop keeps this host's leases alive until ctx is done.
func (s *Service) keeperLoop(ctx context.Context) {
	t := time.NewTicker(keeperTick)
	defer t.Stop()
	// one call is in flight at a time, so its result never waits for room
	results := make(chan keepaliveResult, 1)
	failing := false // log the first failure of a run of them only
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-results:
			switch {
			case r.err != nil && !failing:
				s.log.Warn("lease keepalives failing", "err", r.err, "leases", len(r.leases))
			case r.err != nil:
				s.log.Debug("lease keepalive failed", "err", r.err, "leases", len(r.leases))
			case failing:
				s.log.Info("lease keepalives succeed again", "leases", len(r.leases))
			}
			failing = r.err != nil
			s.forget(ctx, s.keeper.settle(r), "the leader no longer has it")
		case <-t.C:
			now := time.Now()
			lost, batch := s.keeper.due(now)
			s.forget(ctx, lost, "its keepalives failed until its local deadline")
			if len(batch) == 0 {
				continue
			}
			if !s.work.Go(func(ctx context.Context) {
				r := s.sendKeepalive(ctx, batch, now)
				select {
				case results <- r:
				case <-ctx.Done():
				}
			}) {
				return
			}
		}
	}
}

// forget logs lost leases and revokes them, best effort, so that the cluster drops
// their ephemeral nodes now rather than when it expires them.
func (s *Service) forget(ctx context.Context, lost []*ownedLease, why string) {
	if len(lost) == 0 {
		return
	}
	ids := make([]LeaseID, len(lost))
	for i, l := range lost {
		ids[i] = l.id
		s.log.Warn("lease lost", "lease", l.id, "reason", why)
	}
	s.work.Go(func(ctx context.Context) {
		// The lock holders relying on these leases tell their clients first: a revoke
		// that overtook them would let another client take a lock that its holder
		// still believes it has. The leader expires the leases a margin later anyway.
		for _, l := range lost {
			t := time.NewTimer(margin(l.ttl) / 2)
			select {
			case <-l.quieted():
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
		for len(ids) > 0 {
			n := min(len(ids), MaxRevokeBatch)
			if _, err := s.propose(ctx, encodeRevoke(ids[:n]...)); err != nil {
				return // the leader expires them anyway
			}
			ids = ids[n:]
		}
	})
}

func encodeIDs(ids []LeaseID) []byte {
	b := rpc.AppendArrayHeader(nil, len(ids))
	for _, id := range ids {
		b = rpc.AppendInt(b, int64(id))
	}
	return b
}

func decodeInts(b []byte) ([]int64, error) {
	d := rpc.NewDecoder(b)
	n, err := d.ArrayLen()
	if err != nil {
		return nil, err
	}
	out := make([]int64, n)
	for i := range out {
		if out[i], err = d.Int(); err != nil {
			return nil, err
		}
	}
	if d.Remaining() != 0 {
		return nil, fmt.Errorf("%d trailing bytes", d.Remaining())
	}
	return out, nil
}

// keepalive sends one keepalive for ids to the leader and returns their TTLs in seconds
// (0 for a lease the leader does not have).
func (s *Service) keepalive(ctx context.Context, timeout time.Duration, ids []LeaseID) ([]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, min(timeout, s.cfg.RequestTimeout))
	defer cancel()
	reply, err := s.c.LeaderCall(ctx, KeepaliveMethod, encodeIDs(ids))
	if err != nil {
		return nil, unavailable("lease keepalive", err)
	}
	ttls, err := decodeInts(reply)
	if err != nil || len(ttls) != len(ids) {
		return nil, fmt.Errorf("%w: malformed keepalive reply", ErrBackend)
	}
	return ttls, nil
}

func (s *Service) sendKeepalive(ctx context.Context, batch []*ownedLease, sent time.Time) keepaliveResult {
	timeout := batch[0].ttl
	ids := make([]LeaseID, len(batch))
	for i, l := range batch {
		ids[i] = l.id
		timeout = min(timeout, l.ttl)
	}
	ttls, err := s.keepalive(ctx, timeout/3, ids)
	return keepaliveResult{leases: batch, sent: sent, ttls: ttls, err: err}
}

// handleKeepalive serves KeepaliveMethod on the leader: the payload is an array of lease
// ids, the reply an array of their TTLs in seconds, 0 for leases that do not exist.
func (s *Service) handleKeepalive(ctx context.Context, payload []byte) ([]byte, error) {
	raw, err := decodeInts(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed keepalive: %v", ErrBackend, err)
	}
	if !s.leader.isLeading() {
		return nil, fmt.Errorf("%w: this host does not lead (or has not started leading)", ErrConnectionLoss)
	}
	now := time.Now()
	ttls := make([]int64, len(raw))
	lookup := func() (missing bool) {
		for i, id := range raw {
			if ttls[i] == 0 {
				ttls[i], _ = s.store.Lease(LeaseID(id))
				missing = missing || ttls[i] == 0
			}
		}
		return missing
	}
	if lookup() {
		// This replica may not have applied a grant that is committed already.
		if err := s.barrier(ctx, Default); err == nil {
			lookup()
		}
	}
	s.leader.renew(raw, ttls, now)
	b := rpc.AppendArrayHeader(nil, len(ttls))
	for _, ttl := range ttls {
		b = rpc.AppendInt(b, ttl)
	}
	return b, nil
}

// leaderState is the leader's view of lease deadlines.
type leaderState struct {
	mu sync.Mutex
	// mu guards the following fields.
	leading   bool
	deadlines map[LeaseID]time.Time
}

func (ls *leaderState) isLeading() bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.leading
}

// start resets every lease's deadline to now + TTL, as a new leader must: it cannot know
// when the owners last reached the previous one.
func (ls *leaderState) start(now time.Time, leases []LeaseInfo) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.leading = true
	ls.deadlines = make(map[LeaseID]time.Time, len(leases))
	for _, l := range leases {
		ls.deadlines[l.ID] = now.Add(time.Duration(l.TTL) * time.Second)
	}
}

func (ls *leaderState) stop() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.leading, ls.deadlines = false, nil
}

func (ls *leaderState) renew(ids, ttls []int64, now time.Time) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if !ls.leading {
		return
	}
	for i, id := range ids {
		if ttls[i] > 0 {
			ls.deadlines[LeaseID(id)] = now.Add(time.Duration(ttls[i]) * time.Second)
		}
	}
}

// expired returns the leases past their deadline. Leases it sees for the first time get
// now + TTL; deadlines of leases gone from the store are dropped.
func (ls *leaderState) expired(now time.Time, leases []LeaseInfo) []LeaseID {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var out []LeaseID
	seen := make(map[LeaseID]bool, len(leases))
	for _, l := range leases {
		seen[l.ID] = true
		d, ok := ls.deadlines[l.ID]
		switch {
		case !ok:
			ls.deadlines[l.ID] = now.Add(time.Duration(l.TTL) * time.Second)
		case now.After(d):
			out = append(out, l.ID)
		}
	}
	for id := range ls.deadlines {
		if !seen[id] {
			delete(ls.deadlines, id)
		}
	}
	return out
}

// leaderLoop runs the expiry loop whenever this host leads.
func (s *Service) leaderLoop(ctx context.Context) {
	for ctx.Err() == nil {
		leader, changed := s.c.Leadership()
		if leader {
			s.lead(ctx, changed)
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
		}
	}
}

func (s *Service) lead(ctx context.Context, changed <-chan struct{}) {
	s.log.Info("leading: lease deadlines reset")
	s.leader.start(time.Now(), s.store.Leases())
	defer s.leader.stop()
	t := time.NewTicker(s.cfg.ExpiryInterval)
	defer t.Stop()
	for {
		select {
		case <-changed:
			s.log.Info("no longer leading")
			return
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.expire(ctx, now)
		}
	}
}

// expire proposes the revocation of the leases past their deadline.
func (s *Service) expire(ctx context.Context, now time.Time) {
	ids := s.leader.expired(now, s.store.Leases())
	for len(ids) > 0 {
		n := min(len(ids), MaxRevokeBatch)
		if _, err := s.propose(ctx, encodeRevoke(ids[:n]...)); err != nil {
			s.log.Warn("revoking expired leases failed", "err", err, "leases", n)
			return // the next tick tries again
		}
		s.log.Info("revoked expired leases", "leases", n, "first", ids[0])
		ids = ids[n:]
	}
}

// grantOwned grants a lease that this host keeps alive.
func (s *Service) grantOwned(ctx context.Context, ttl time.Duration) (*ownedLease, error) {
	sent := time.Now()
	id, secs, err := s.grant(ctx, ttl)
	if err != nil {
		return nil, err
	}
	l := newOwned(id, time.Duration(secs)*time.Second, sent)
	s.keeper.add(l)
	return l, nil
}

// grant proposes a lease grant.
func (s *Service) grant(ctx context.Context, ttl time.Duration) (LeaseID, int64, error) {
	res, err := s.propose(ctx, encodeGrant(int64(clampTTL(ttl)/time.Second)))
	if err != nil {
		return 0, 0, err
	}
	return decodeGrantResult(res)
}

// releaseLease stops keeping l alive and revokes it, retrying until the revoke goes
// through or the cluster has expired the lease anyway.
func (s *Service) releaseLease(ctx context.Context, l *ownedLease) {
	s.keeper.drop(l)
	until := s.keeper.expiry(l)
	t := time.NewTicker(l.ttl / 8)
	defer t.Stop()
	for {
		res, err := s.propose(ctx, encodeRevoke(l.id))
		if err == nil {
			if _, _, err = decodeRevokeResult(res); err == nil {
				return
			}
		}
		if time.Now().After(until) {
			s.log.Warn("revoking a lease failed until it expired", "lease", l.id, "err", err)
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// hostLoop holds this host's lease: it grants one, and a new one whenever it is lost.
func (s *Service) hostLoop(ctx context.Context) {
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for failures := 0; ; {
		l, err := s.grantOwned(ctx, s.cfg.HostLeaseTTL)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if failures++; failures == 1 {
				s.log.Warn("granting the host lease failed; retrying every second", "err", err)
			}
			select {
			case <-retry.C:
				continue
			case <-ctx.Done():
				return
			}
		}
		s.mu.Lock()
		s.host = l
		close(s.hostWait)
		s.hostWait = make(chan struct{})
		s.mu.Unlock()
		failures = 0
		s.log.Info("host lease granted", "lease", l.id, "ttl", l.ttl)
		select {
		case <-l.lost:
		case <-ctx.Done():
			return
		}
	}
}

// HostLease returns this host's lease and a channel closed when it is lost (a new one
// is then granted: call HostLease again). It blocks until Run has obtained a lease, or
// ctx is done. Other packages bind ephemeral nodes to it (the locator publishes this
// host's services under it), so they vanish when the host does.
func (s *Service) HostLease(ctx context.Context) (LeaseID, <-chan struct{}, error) {
	for {
		s.mu.Lock()
		l, wait := s.host, s.hostWait
		s.mu.Unlock()
		if l != nil {
			select {
			case <-l.lost:
			default:
				return l.id, l.lost, nil
			}
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return 0, nil, fmt.Errorf("%w: no host lease yet: %v", ErrConnectionLoss, ctx.Err())
		}
	}
}

// session is the lease state of one client connection.
type session struct {
	lease    *ownedLease
	granting chan struct{} // non-nil while a grant is in flight; closed when it is done
	ended    bool
}

// sessionLease returns the lease of the connection sess, granting one if it has none (or
// lost it). The lease is revoked when the connection ends.
func (s *Service) sessionLease(ctx context.Context, sess *rpc.Session) (*ownedLease, error) {
	for {
		s.mu.Lock()
		st := s.sessions[sess]
		if st == nil {
			select {
			case <-sess.Done():
				s.mu.Unlock()
				return nil, fmt.Errorf("%w: the connection is closed", ErrConnectionLoss)
			default:
			}
			st = &session{}
			s.sessions[sess] = st
			if !s.work.Go(func(ctx context.Context) { s.watchSession(ctx, sess) }) {
				delete(s.sessions, sess)
				s.mu.Unlock()
				return nil, errStopping
			}
		}
		if l := st.lease; l != nil {
			select {
			case <-l.lost:
			default:
				s.mu.Unlock()
				return l, nil
			}
		}
		if wait := st.granting; wait != nil {
			s.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, unavailable("session lease", ctx.Err())
			}
		}
		done := make(chan struct{})
		st.granting = done
		s.mu.Unlock()

		l, err := s.grantOwned(ctx, s.cfg.SessionLeaseTTL)
		s.mu.Lock()
		st.granting = nil
		close(done)
		ended := st.ended
		if err == nil && !ended {
			st.lease = l
		}
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if ended {
			s.work.Go(func(ctx context.Context) { s.releaseLease(ctx, l) })
			return nil, fmt.Errorf("%w: the connection is closed", ErrConnectionLoss)
		}
		return l, nil
	}
}

// watchSession revokes the session's lease when its connection ends.
func (s *Service) watchSession(ctx context.Context, sess *rpc.Session) {
	select {
	case <-sess.Done():
	case <-ctx.Done():
		return
	}
	s.mu.Lock()
	st := s.sessions[sess]
	delete(s.sessions, sess)
	st.ended = true
	l := st.lease
	s.mu.Unlock()
	if l != nil {
		s.releaseLease(ctx, l)
	}
}
