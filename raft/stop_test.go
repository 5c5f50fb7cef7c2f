package raft

import (
	"context"
	"errors"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

// silentConn drops everything written once the network goes silent: the peer never
// answers, as behind a partition that loses packets rather than refusing them.
type silentConn struct {
	net.Conn
	silent *atomic.Bool
}

func (c *silentConn) Write(b []byte) (int, error) {
	if c.silent.Load() {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// A leader whose followers went silent stops without waiting out the transport's
// 10 s timeout on the requests it has in flight to them.
func TestStopWithSilentPeers(t *testing.T) {
	var silent atomic.Bool
	nodes := cluster(t, 3, func(_ int, cfg *Config) {
		cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return &silentConn{Conn: c, silent: &silent}, nil
		}
	})
	leader := waitLeader(t, nodes)
	set(t, leader, "k", "v")
	silent.Store(true)
	// Requests go out and are never answered: a proposal, heartbeats, appends.
	pctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	go leader.n.Propose(pctx, []byte("set k lost"))
	time.Sleep(300 * time.Millisecond)

	start := time.Now()
	leader.cancel()
	leader.cancel = nil
	select {
	case err := <-leader.done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
		t.Logf("stopped in %s", time.Since(start))
	case <-time.After(8 * time.Second): // the transport's timeout is 10 s
		buf := make([]byte, 1<<20)
		t.Logf("%s", buf[:runtime.Stack(buf, true)])
		t.Fatal("the leader waited for its silent peers' answers to stop")
	}
}

// neverAnswered is a future hashicorp dropped: its Error blocks until the test ends.
type neverAnswered struct{ end chan struct{} }

func (f neverAnswered) Error() error  { <-f.end; return hraft.ErrRaftShutdown }
func (f neverAnswered) Index() uint64 { return 0 }
func (f neverAnswered) Response() any { return nil }

// A stop does not wait for an entry whose answer hashicorp dropped at shutdown (its FSM
// loop returns with committed entries still queued), and the entry's proposer is told
// the node stopped.
func TestStopWithDroppedAnswer(t *testing.T) {
	cfg := fastConfig(t, "solo")
	cfg.Bootstrap = true
	tn := start(t, cfg)
	waitLeader(t, []*testNode{tn})
	end := make(chan struct{})
	defer close(end) // lets the goroutine left waiting go
	p := &proposal{cmd: []byte("set k v"), done: make(chan proposalResult, 1)}
	tn.n.flight <- &inflight{f: neverAnswered{end}, props: []*proposal{p}}
	tn.stop() // fails the test if Run does not return
	select {
	case r := <-p.done:
		t.Fatalf("the dropped entry's proposer got %+v", r)
	default:
	}
	if _, _, err := tn.n.proposeLocal(ctxFor(t, time.Second), []byte("set k w")); !errors.Is(err, ErrStopped) {
		t.Fatalf("propose after the stop: %v, want ErrStopped", err)
	}
}
