package raft

import (
	"context"
	"sync"

	hraft "github.com/hashicorp/raft"
)

// Commit notices. hashicorp's followers learn the commit index only from an
// AppendEntries that replicates entries, or, when nothing is appended, from the one the
// leader sends CommitTimeout later; its heartbeats carry none. A follower waiting to
// apply a write it forwarded, to reach a read index, or to notify its watchers would
// wait that long on a quiet cluster. etcd's leader sends the new commit index at once,
// without a log entry. So does this leader: after an entry commits, it sends each
// follower an AppendEntries with no entries and LeaderCommitIndex set: no log entry, no
// fsync anywhere.
//
// Such a request skips the follower's log consistency check (PrevLogEntry is 0), so the
// index it carries must be one the follower's log is known to agree with the leader's
// up to. The transport learns that from the leader's own AppendEntries: a successful
// answer to one of term T that ends at index e means the follower's log equals the
// leader's term-T log up to e (the Log Matching property), and it stays so during T. The
// notice carries min(committed, e), where committed is the leader's commit index read
// while the term was T: in term T only this server leads, so that index is committed
// and in its term-T log. The follower therefore commits exactly the committed prefix.
// A notice of an old term is refused by a follower that has seen a newer one.

// noticeTransport is hashicorp's NetworkTransport that watches the leader's successful
// AppendEntries (plain and pipelined) and feeds what they prove to the notices.
type noticeTransport struct {
	*hraft.NetworkTransport // every other method, and the optional interfaces
	n                       *notices
}

func (t *noticeTransport) AppendEntries(id hraft.ServerID, target hraft.ServerAddress, args *hraft.AppendEntriesRequest, resp *hraft.AppendEntriesResponse) error {
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	if err == nil {
		t.n.acked(id, target, args, resp)
	}
	return err
}

func (t *noticeTransport) AppendEntriesPipeline(id hraft.ServerID, target hraft.ServerAddress) (hraft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	// out holds more answers than the pipeline keeps in flight (hashicorp's default: 2),
	// so the look on the way never holds it back.
	np := &noticePipeline{AppendPipeline: p, out: make(chan hraft.AppendFuture, 16), done: make(chan struct{})}
	go np.forward(t.n, id, target)
	return np, nil
}

// noticePipeline passes the pipeline's answers on, looking at each on the way.
type noticePipeline struct {
	hraft.AppendPipeline
	out  chan hraft.AppendFuture
	done chan struct{}
	once sync.Once
}

func (p *noticePipeline) forward(n *notices, id hraft.ServerID, target hraft.ServerAddress) {
	in := p.AppendPipeline.Consumer()
	for {
		select {
		case f := <-in:
			if f.Error() == nil {
				n.acked(id, target, f.Request(), f.Response())
			}
			select {
			case p.out <- f:
			case <-p.done:
				return
			case <-n.ctx.Done():
				return
			}
		case <-p.done:
			return
		case <-n.ctx.Done():
			return
		}
	}
}

func (p *noticePipeline) Consumer() <-chan hraft.AppendFuture { return p.out }

func (p *noticePipeline) Close() error {
	p.once.Do(func() { close(p.done) })
	return p.AppendPipeline.Close()
}

// notices is what the leader knows of its followers' logs in its current term, and the
// senders of the notices.
type notices struct {
	trans *hraft.NetworkTransport
	ctx   context.Context
	wg    *sync.WaitGroup

	mu        sync.Mutex
	term      uint64          // the term the fields below are about
	header    hraft.RPCHeader // from the leader's own requests of that term
	leader    []byte
	committed uint64 // the commit index read while the term was term
	followers map[hraft.ServerID]*follower
	stopped   bool // no new senders: the node is stopping
}

// follower is one follower in the current term.
type follower struct {
	addr  hraft.ServerAddress
	match uint64 // its log equals the leader's up to here
	told  uint64 // it knows the commit index is at least this
	kick  chan struct{}
	gone  chan struct{} // closed when it leaves the configuration: its sender ends
}

func newNotices(ctx context.Context, wg *sync.WaitGroup) *notices {
	return &notices{ctx: ctx, wg: wg, followers: map[hraft.ServerID]*follower{}}
}

// transport wraps trans, which the notices are sent through.
func (n *notices) transport(trans *hraft.NetworkTransport) *noticeTransport {
	n.trans = trans
	return &noticeTransport{NetworkTransport: trans, n: n}
}

// stop starts no more senders; the running ones end with ctx. Call it before waiting
// for wg.
func (n *notices) stop() {
	n.mu.Lock()
	n.stopped = true
	n.mu.Unlock()
}

// reset starts a new term's knowledge. n.mu is held.
func (n *notices) reset(term uint64) {
	n.term, n.committed = term, 0
	n.header, n.leader = hraft.RPCHeader{}, nil
	for _, f := range n.followers {
		f.match, f.told = 0, 0
	}
}

// acked records a successful AppendEntries of the leader's.
func (n *notices) acked(id hraft.ServerID, target hraft.ServerAddress, req *hraft.AppendEntriesRequest, resp *hraft.AppendEntriesResponse) {
	if req == nil || resp == nil || !resp.Success {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.stopped:
		return
	case req.Term < n.term:
		return
	case req.Term > n.term:
		n.reset(req.Term)
	}
	if n.leader == nil {
		n.header, n.leader = req.RPCHeader, req.Leader
	}
	f := n.followers[id]
	if f == nil {
		f = &follower{kick: make(chan struct{}, 1), gone: make(chan struct{})} // one token in kick: "there may be news"; send re-reads the state
		n.followers[id] = f
		n.wg.Go(func() { n.send(id, f) })
	}
	f.addr = target
	// A heartbeat (no entries, PrevLogEntry 0) ends at 0 and proves nothing.
	end := req.PrevLogEntry + uint64(len(req.Entries))
	f.match = max(f.match, end)
	// The follower committed what the request told it, up to the request's end at least.
	f.told = max(f.told, min(req.LeaderCommitIndex, end))
	n.wake(f)
}

// commit records the leader's commit index after an entry of its own committed. The
// term is read on both sides: an index read while the term changed is dropped.
func (n *notices) commit(r *hraft.Raft) {
	t1 := r.CurrentTerm()
	c := r.CommitIndex()
	if r.CurrentTerm() != t1 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if t1 > n.term {
		n.reset(t1)
	}
	if t1 != n.term || c <= n.committed {
		return
	}
	n.committed = c
	for _, f := range n.followers {
		n.wake(f)
	}
}

// keep forgets the followers that are not in servers (removed from the cluster) and
// ends their senders; one added again starts afresh with its next acknowledgement.
func (n *notices) keep(servers []hraft.Server) {
	in := make(map[hraft.ServerID]bool, len(servers))
	for _, s := range servers {
		in[s.ID] = true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for id, f := range n.followers {
		if !in[id] {
			close(f.gone)
			delete(n.followers, id)
		}
	}
}

// wake kicks f's sender if it has something to tell. n.mu is held.
func (n *notices) wake(f *follower) {
	if min(n.committed, f.match) > f.told {
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
}

// send tells one follower the commit index whenever there is news, one notice at a time.
func (n *notices) send(id hraft.ServerID, f *follower) {
	for {
		select {
		case <-f.kick:
		case <-f.gone:
			return
		case <-n.ctx.Done():
			return
		}
		if n.ctx.Err() != nil {
			return // stopping: both cases were ready and select took the kick
		}
		n.mu.Lock()
		c := min(n.committed, f.match)
		if c <= f.told || n.leader == nil {
			n.mu.Unlock()
			continue
		}
		f.told = c
		req := hraft.AppendEntriesRequest{RPCHeader: n.header, Term: n.term, Leader: n.leader, LeaderCommitIndex: c}
		addr := f.addr
		n.mu.Unlock()
		var resp hraft.AppendEntriesResponse
		if err := n.trans.AppendEntries(id, addr, &req, &resp); err != nil || !resp.Success {
			// Lost, or refused (a newer term): raft's own requests carry the index
			// anyway; forget that this one was told, so news sends it again.
			n.mu.Lock()
			if n.term == req.Term && f.told == c {
				f.told = 0
			}
			n.mu.Unlock()
		}
	}
}
