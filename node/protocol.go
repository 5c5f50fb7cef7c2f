package node

import (
	"context"

	"github.com/cocaine/cocaine/rpc"
)

// AppGraph is the protocol of every app's service, named after the app (io::app,
// version 1, plugins.md §2.7): enqueue streams both ways, control streams pool sizes.
var AppGraph = rpc.ServiceGraph(1,
	rpc.Method{Name: "enqueue", Dispatch: rpc.Streaming, Upstream: rpc.Streaming},
	rpc.Method{Name: "info", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "control", Dispatch: rpc.Streaming, Upstream: rpc.Terminal},
)

// workerControl is channel 1 of a worker connection after the handshake: heartbeats
// both ways, and terminate from either side (plugins.md §2.9).
var workerControl = rpc.NewState(
	rpc.Transition{ID: 0, Name: "heartbeat", Next: nil},
	rpc.Transition{ID: 1, Name: "terminate", Next: rpc.Terminal},
)

// WorkerGraph is what a worker may open on its connection: the handshake.
var WorkerGraph = rpc.MustGraph(1,
	rpc.Method{ID: 0, Name: "handshake", Dispatch: workerControl, Upstream: workerControl},
)

func (a *app) dispatcher() *rpc.Dispatcher {
	d := rpc.NewDispatcher(AppGraph, errorTable, a.log)
	d.MustHandle("enqueue", func(ctx context.Context, req *rpc.Request) error {
		var event, tag string // the tag is deprecated and ignored, as in the original
		if err := req.Args.Scan(&event, rpc.Optional(&tag)); err != nil {
			return err
		}
		if err := a.e.enqueue(event, req); err != nil {
			req.Receive(swallow{})
			return err
		}
		return nil
	})
	d.MustHandle("info", func(ctx context.Context, req *rpc.Request) error {
		return a.e.info(req.Tx, InfoOverseerReport, false)
	})
	d.MustHandle("control", func(ctx context.Context, req *rpc.Request) error {
		req.Receive(&controlStream{e: a.e})
		return nil
	})
	return d
}

// controlStream applies control(N) messages; the end of the stream, however it ends,
// returns the pool to automatic sizing.
type controlStream struct{ e *engine }

func (c *controlStream) Receive(m rpc.Message, last bool) error {
	if m.Type == rpc.Write {
		var n int64
		if err := m.Args.Scan(&n); err != nil {
			return err // undecodable: a protocol violation, the connection closes
		}
		c.e.post(func() { c.e.control(n) })
		return nil
	}
	c.e.post(func() { c.e.control(0) })
	return nil
}

func (c *controlStream) Discard(error) { c.e.post(func() { c.e.control(0) }) }

// swallow drops the rest of a stream that was refused.
type swallow struct{}

func (swallow) Receive(rpc.Message, bool) error { return nil }
func (swallow) Discard(error)                   {}

func (a *app) workerDispatcher() *rpc.Dispatcher {
	d := rpc.NewDispatcher(WorkerGraph, errorTable, a.log)
	e := a.e
	d.MustHandle("handshake", func(ctx context.Context, req *rpc.Request) error {
		var uuid string
		if err := req.Args.Scan(&uuid); err != nil {
			return err
		}
		s := req.Session()
		req.Receive(&workerConn{e: e, uuid: uuid, s: s, tx: req.Tx})
		if !e.post(func() { e.handshake(uuid, s, req.Tx) }) {
			s.Close()
		}
		return nil
	})
	return d
}

// workerConn receives a worker's control channel: it echoes heartbeats at once (the
// worker considers itself disowned without the echo) and tells the engine.
type workerConn struct {
	e    *engine
	uuid string
	s    *rpc.Session
	tx   *rpc.Tx
}

func (c *workerConn) Receive(m rpc.Message, last bool) error {
	switch m.Type {
	case 0:
		c.tx.Send(0) // the echo; a closed channel is the engine's business
		c.e.post(func() {
			if w := c.e.byConn(c.uuid, c.s); w != nil {
				w.beat()
			}
		})
	case 1:
		var code int64
		var reason string
		if err := m.Args.Scan(&code, rpc.Optional(&reason)); err != nil {
			return err
		}
		c.e.post(func() {
			if w := c.e.byConn(c.uuid, c.s); w != nil {
				w.suicide(int(code), reason)
			}
		})
	}
	return nil
}

func (c *workerConn) Discard(error) {
	c.e.post(func() {
		if w := c.e.byConn(c.uuid, c.s); w != nil {
			w.disconnect()
		}
	})
}
