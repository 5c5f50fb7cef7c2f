package raft

import (
	"context"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
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
