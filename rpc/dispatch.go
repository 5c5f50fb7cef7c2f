package rpc

import (
	"context"
	"fmt"
	"log/slog"
)

// Handler serves the first message of a channel opened on a root method. It runs on the
// session's reader goroutine and must not block: a handler that waits (on disk, on
// another service) hands the Request to a goroutine of its owner and replies later
// through req.Tx.
//
// Returning an error sends it as the channel's error reply (mapped through the
// Dispatcher's ErrorTable) if the upstream still allows one. An error marked Fatal (as
// argument decoding errors are), or any error from a method that cannot reply (mute
// methods such as logging.emit), closes the connection, as the original does.
type Handler func(ctx context.Context, req *Request) error

// Request is a channel the peer opened.
type Request struct {
	Method  Method
	Args    Args
	Headers []Header
	Trace   Trace
	Tx      *Tx // the reply side

	ch      *channel
	session *Session
	tx      Tx      // storage for Tx
	chrec   channel // storage for ch
}

// Receive registers r for the later messages of this channel (after the first), for
// methods whose dispatch lets the peer go on sending (streams, discard, close). Without a
// receiver those messages are still checked against the graph, then dropped. Call it
// before the handler returns.
func (r *Request) Receive(rc Receiver) { r.ch.receiver = rc }

// Session is the connection the request came on.
func (r *Request) Session() *Session { return r.session }

// Header returns the value of the first header named name.
func (r *Request) Header(name string) ([]byte, bool) {
	for _, h := range r.Headers {
		if h.Name == name {
			return h.Value, true
		}
	}
	return nil, false
}

// Dispatcher binds handlers to the root methods of a graph. Registration is explicit and
// checked against the graph. A Dispatcher is built once and then read-only: safe for
// concurrent use by many sessions.
type Dispatcher struct {
	graph  *Graph
	errors ErrorTable
	slots  []slot // by index into graph.Methods()
	log    *slog.Logger
}

type slot struct {
	method  Method
	handler Handler
}

// NewDispatcher returns a dispatcher for g. errs maps the service's sentinel errors to
// their wire codes; log (nil discards) receives handler panics.
func NewDispatcher(g *Graph, errs ErrorTable, log *slog.Logger) *Dispatcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Dispatcher{graph: g, errors: errs, log: log, slots: make([]slot, len(g.Methods()))}
	for i, m := range g.Methods() {
		d.slots[i].method = m
	}
	return d
}

// Graph is the graph the dispatcher serves.
func (d *Dispatcher) Graph() *Graph { return d.graph }

// Handle binds h to the method named name. It fails for a name the graph lacks, a control
// method (the session serves those) or a name bound twice.
func (d *Dispatcher) Handle(name string, h Handler) error {
	for i := range d.slots {
		s := &d.slots[i]
		if s.method.Name != name {
			continue
		}
		if s.method.ID >= ControlGoaway {
			return fmt.Errorf("rpc: %q is a control method, served by the session", name)
		}
		if s.handler != nil {
			return fmt.Errorf("%w: %q is already bound", ErrDuplicateSlot, name)
		}
		s.handler = h
		return nil
	}
	return fmt.Errorf("rpc: the graph has no method %q", name)
}

// MustHandle is Handle for registrations written in code; it panics on a mistake there.
func (d *Dispatcher) MustHandle(name string, h Handler) {
	if err := d.Handle(name, h); err != nil {
		panic(err)
	}
}

// Wire converts a handler's error for the wire with the service's table.
func (d *Dispatcher) Wire(err error) *Error { return d.errors.Wire(err) }

// slot finds the handler of a method id. Unbound methods are not found: calling one is
// fatal, as the original's slot_not_found.
func (d *Dispatcher) slot(id uint64) (slot, bool) {
	ms := d.graph.Methods()
	lo, hi := 0, len(ms)
	for lo < hi {
		mid := (lo + hi) / 2
		if ms[mid].ID < id {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(ms) && ms[lo].ID == id && d.slots[lo].handler != nil {
		return d.slots[lo], true
	}
	return slot{}, false
}

func (d *Dispatcher) call(s *Session, sl slot, req *Request) (err error) {
	defer func() {
		if p := recover(); p != nil {
			d.log.Error("handler panicked", "method", sl.method.Name, "panic", p)
			err = fmt.Errorf("%w: handler %q panicked: %v", ErrUncaught, sl.method.Name, p)
		}
		if err == nil {
			return
		}
		if IsFatal(err) {
			return
		}
		if !req.Tx.canSend(Fail) {
			err = Fatal(fmt.Errorf("method %q cannot reply with an error: %w", sl.method.Name, err))
			return
		}
		if sendErr := req.Tx.Error(d.errors.Wire(err)); sendErr != nil {
			err = nil // the session is going away; nothing more to do
			return
		}
		err = nil
	}()
	ctx := s.ctx
	if req.Trace.Traced() || req.Trace.Verbose {
		ctx = WithTrace(ctx, req.Trace)
	}
	return sl.handler(ctx, req)
}

type traceKey struct{}

// WithTrace returns ctx carrying t. Channels opened under it carry a child span.
func WithTrace(ctx context.Context, t Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

// TraceFrom returns the trace ctx carries, if any.
func TraceFrom(ctx context.Context) (Trace, bool) {
	t, ok := ctx.Value(traceKey{}).(Trace)
	return t, ok
}
