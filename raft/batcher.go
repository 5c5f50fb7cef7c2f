package raft

import (
	"context"
	"errors"
	"fmt"
	"time"

	hraft "github.com/hashicorp/raft"
)

// proposal is one command waiting for the leader's log.
type proposal struct {
	cmd  []byte
	done chan proposalResult // one result, sent without blocking
}

// batchLinger is how long the batcher waits for more proposals before it closes an
// entry, when the last entry carried several (a light load sends at once).
const batchLinger = 300 * time.Microsecond

type proposalResult struct {
	index  uint64
	result []byte
	err    error
}

// inflight is a log entry handed to raft, with the proposals it carries.
type inflight struct {
	f     hraft.ApplyFuture
	props []*proposal
}

// proposeLocal queues cmd for this server's log; the server must lead. It returns the
// entry's index and the FSM's result.
func (n *Node) proposeLocal(ctx context.Context, cmd []byte) (uint64, []byte, error) {
	// One result, sent by the waiter without blocking.
	p := &proposal{cmd: cmd, done: make(chan proposalResult, 1)}
	select {
	case n.props <- p:
	case <-n.stopping:
		return 0, nil, ErrStopped
	case <-ctx.Done():
		return 0, nil, fmt.Errorf("%w: %w", ErrNoLeader, ctx.Err()) // never queued: nothing applied
	}
	select {
	case r := <-p.done:
		return r.index, r.result, r.err
	case <-ctx.Done():
		return 0, nil, fmt.Errorf("%w: %w", ErrIndeterminate, ctx.Err())
	case <-n.stopped:
		select {
		case r := <-p.done:
			return r.index, r.result, r.err
		default:
			return 0, nil, ErrStopped
		}
	}
}

// batch packs queued proposals into log entries. raft takes an entry only between
// disk writes, so while one entry is being written the next one fills up: the batch
// size follows the load by itself.
func (n *Node) batch(ctx context.Context) {
	lastBatch := 0
	lingerT := time.NewTimer(time.Hour)
	lingerT.Stop()
	defer lingerT.Stop()
	for {
		var first *proposal
		select {
		case first = <-n.props:
		case <-ctx.Done():
			n.drainProposals()
			return
		}
		props := []*proposal{first}
		size := len(first.cmd)
		var linger <-chan time.Time
		if lastBatch > 1 {
			// Under load: give the clients answered by the last entry a moment to send
			// their next command, so the next entry (and its fsyncs) carries them all.
			lingerT.Reset(batchLinger)
			linger = lingerT.C
		}
	fill:
		for len(props) < n.cfg.MaxBatch && size < n.cfg.MaxBatchBytes {
			select {
			case p := <-n.props:
				props = append(props, p)
				size += len(p.cmd)
				continue
			default:
			}
			if linger == nil {
				break
			}
			select {
			case p := <-n.props:
				props = append(props, p)
				size += len(p.cmd)
			case <-linger:
				break fill
			}
		}
		if linger != nil && !lingerT.Stop() {
			select { // the timer fired: drain it so the next Reset starts clean
			case <-lingerT.C:
			default:
			}
		}
		lastBatch = len(props)
		cmds := make([][]byte, len(props))
		for i, p := range props {
			cmds[i] = p.cmd
		}
		data := appendEnvelope(make([]byte, 0, envelopeSize(len(cmds), size)), cmds)
		f := n.r.Apply(data, 0) // blocks until raft takes it, or raft shuts down
		select {
		case n.flight <- &inflight{f: f, props: props}:
		case <-ctx.Done():
			// The waiter is gone: resolve this entry here. Raft is shutting down, so its
			// future is answered soon, or never if hashicorp dropped the answer (the end
			// of Run says when): not waited for, so that it cannot hold the stop.
			go n.resolve(&inflight{f: f, props: props})
			n.drainProposals()
			return
		}
	}
}

// drainProposals fails proposals still queued when the node stops: they never reached
// raft.
func (n *Node) drainProposals() {
	for {
		select {
		case p := <-n.props:
			p.done <- proposalResult{err: ErrStopped}
		default:
			return
		}
	}
}

// await resolves entries in the order they were handed to raft (which is the order
// they commit in).
func (n *Node) await(ctx context.Context) {
	for {
		select {
		case e := <-n.flight:
			n.resolve(e)
		case <-ctx.Done():
			for {
				select {
				case e := <-n.flight:
					n.resolve(e)
				default:
					return
				}
			}
		}
	}
}

func (n *Node) resolve(e *inflight) {
	err := e.f.Error()
	if err != nil {
		err = mapApplyError(err)
		for _, p := range e.props {
			p.done <- proposalResult{err: err}
		}
		return
	}
	results, _ := e.f.Response().(batchResult)
	idx := e.f.Index()
	// Followers wait to apply this entry (forwarded writes, reads at this index,
	// watchers): tell them it is committed, before the answers go out.
	n.notices.commit(n.r)
	for i, p := range e.props {
		var r []byte
		if i < len(results) {
			r = results[i]
		}
		p.done <- proposalResult{index: idx, result: r}
	}
}

// mapApplyError turns hashicorp's apply errors into ours: whether the entry may have
// been committed decides between ErrNotLeader and ErrIndeterminate.
func mapApplyError(err error) error {
	switch {
	case errors.Is(err, hraft.ErrNotLeader), errors.Is(err, hraft.ErrLeadershipTransferInProgress), errors.Is(err, hraft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	case errors.Is(err, hraft.ErrRaftShutdown):
		return fmt.Errorf("%w: %v", ErrStopped, err)
	}
	return fmt.Errorf("%w: %v", ErrIndeterminate, err)
}
