package cocaine_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// fakeNode is the runtime side of the worker protocol, built from the wire package
// alone: it accepts one worker on a unix socket, takes its handshake, echoes heartbeats
// (unless mute) and opens invoke channels on it.
type fakeNode struct {
	Endpoint string
	ln       net.Listener
	mute     bool

	mu        sync.Mutex
	session   *rpc.Session
	control   *rpc.Tx
	uuid      string
	terminate []any         // the worker's terminate, once it sent one
	ready     chan struct{} // closed at the handshake
	wg        sync.WaitGroup
}

var (
	control   = rpc.NewState(rpc.Transition{ID: 0, Name: "heartbeat"}, rpc.Transition{ID: 1, Name: "terminate", Next: rpc.Terminal})
	invokeM   = rpc.Method{ID: 0, Name: "invoke", Dispatch: rpc.Streaming, Upstream: rpc.Streaming}
	nodeGraph = rpc.MustGraph(1, rpc.Method{ID: 0, Name: "handshake", Dispatch: control, Upstream: control})
)

func startFakeNode(tb testing.TB, dir string, mute bool) *fakeNode {
	n, err := newFakeNode(dir, mute)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func newFakeNode(dir string, mute bool) (*fakeNode, error) {
	ep := filepath.Join(dir, "app.sock")
	ln, err := net.Listen("unix", ep)
	if err != nil {
		return nil, err
	}
	n := &fakeNode{Endpoint: ep, ln: ln, mute: mute, ready: make(chan struct{})}
	d := rpc.NewDispatcher(nodeGraph, nil, nil)
	d.MustHandle("handshake", func(ctx context.Context, req *rpc.Request) error {
		var uuid string
		if err := req.Args.Scan(&uuid); err != nil {
			return err
		}
		n.mu.Lock()
		n.uuid, n.session, n.control = uuid, req.Session(), req.Tx
		n.mu.Unlock()
		req.Receive(n)
		close(n.ready)
		return nil
	})
	n.wg.Go(func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		rpc.NewSession(conn, rpc.SessionConfig{Dispatcher: d}).Run(context.Background())
	})
	return n, nil
}

// Receive gets the worker's control channel.
func (n *fakeNode) Receive(m rpc.Message, last bool) error {
	switch m.Type {
	case 0:
		if !n.mute {
			n.control.Send(0)
		}
	case 1:
		var code int64
		var reason string
		m.Args.Scan(&code, &reason)
		n.mu.Lock()
		n.terminate = []any{code, reason}
		n.mu.Unlock()
	}
	return nil
}

func (n *fakeNode) Discard(error) {}

func (n *fakeNode) Close() {
	n.ln.Close()
	n.mu.Lock()
	s := n.session
	n.mu.Unlock()
	if s != nil {
		s.Close()
	}
	n.wg.Wait()
}

// invoke sends event with chunks and returns the joined reply chunks, or the error the
// worker ended the stream with.
func (n *fakeNode) invoke(ctx context.Context, event string, chunks ...string) (string, error) {
	select {
	case <-n.ready:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	reply := &collect{done: make(chan struct{})}
	args, _ := rpc.AppendArgs(nil, event)
	tx, err := n.session.Open(invokeM, args, nil, rpc.Trace{}, reply)
	if err != nil {
		return "", err
	}
	for _, c := range chunks {
		tx.Write(c)
	}
	tx.Close()
	select {
	case <-reply.done:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return reply.out.String(), reply.err
}

// sendTerminate asks the worker to stop.
func (n *fakeNode) sendTerminate(code int, reason string) error {
	<-n.ready
	return n.control.Send(1, code, reason)
}

type collect struct {
	out  strings.Builder
	err  error
	done chan struct{}
	once sync.Once
}

func (c *collect) Receive(m rpc.Message, last bool) error {
	switch m.Name {
	case "write":
		var s string
		m.Args.Scan(&s)
		c.out.WriteString(s)
	case "error":
		c.err = m.Err()
	}
	if last {
		c.once.Do(func() { close(c.done) })
	}
	return nil
}

func (c *collect) Discard(err error) {
	c.err = errors.Join(c.err, err)
	c.once.Do(func() { close(c.done) })
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
