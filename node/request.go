package node

import (
	"encoding/binary"
	"strconv"
	"sync"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// A request is one enqueued event and the two streams it bridges (plugins.md §2.8):
//
//	client --write/close/error--> [pending until assigned] --> worker channel
//	client <--write/close/error------------------------------- worker channel
//
//	queued --assigned by the engine--> attached --both directions ended--> done
//	   \--expired / client gone------------\--timeout / worker died / app stopped--> done
//
// The engine loop owns the transitions queued→attached and the worker bookkeeping;
// mu guards the stream state, which the client's and the worker's session readers
// touch as messages arrive.
type request struct {
	e        *engine
	event    string
	args     rpc.Raw      // the invoke's args: [event]
	headers  []rpc.Header // forwarded to the worker, trace headers excluded
	trace    rpc.Trace
	birth    time.Time
	deadline time.Time
	client   *rpc.Tx
	timer    *time.Timer // the deadline; set before the request is shared

	w *worker // owned by the engine loop

	mu        sync.Mutex
	state     reqState
	pending   []rpc.Message // client messages that arrived before a worker took the event
	clientEnd bool          // the client's direction ended
	workerEnd bool          // the worker's direction ended
	wtx       *rpc.Tx       // the channel to the worker, once attached
}

type reqState uint8

const (
	reqQueued reqState = iota
	reqAttached
	reqDone
)

// HeaderRequestTimeout overrides the profile's request-timeout for one request, in
// milliseconds: an 8-byte little-endian uint64 as the original packs integers into
// header values, or a decimal string.
const HeaderRequestTimeout = "request_timeout"

// requestTimeout returns the timeout a request's headers ask for, if any.
func requestTimeout(hs []rpc.Header) (time.Duration, bool) {
	for _, h := range hs {
		if h.Name != HeaderRequestTimeout {
			continue
		}
		var ms uint64
		if len(h.Value) == 8 {
			ms = binary.LittleEndian.Uint64(h.Value)
		} else if v, err := strconv.ParseUint(string(h.Value), 10, 64); err == nil {
			ms = v
		} else {
			return 0, false
		}
		if ms > uint64(maxTimeout)*1000 {
			ms = uint64(maxTimeout) * 1000
		}
		return time.Duration(ms) * time.Millisecond, true
	}
	return 0, false
}

// forwarded drops the trace headers, which the worker channel carries on its own.
func forwarded(hs []rpc.Header) []rpc.Header {
	var out []rpc.Header
	for _, h := range hs {
		switch h.Name {
		case rpc.HeaderTraceID, rpc.HeaderSpanID, rpc.HeaderParentID:
			continue
		}
		out = append(out, h)
	}
	return out
}

// Receive implements rpc.Receiver for the client's direction. Chunks are sent to the
// worker outside mu: only this session reader sends chunks, and the Tx keeps call order,
// so a worker that is slow to read holds up its client and nothing else.
func (r *request) Receive(m rpc.Message, last bool) error {
	r.mu.Lock()
	if r.state == reqDone || r.clientEnd {
		r.mu.Unlock()
		return nil
	}
	if last {
		r.clientEnd = true
	}
	if r.wtx == nil {
		r.pending = append(r.pending, m) // frames never alias reused memory: safe to keep
		r.mu.Unlock()
		return nil
	}
	wtx := r.wtx
	r.mu.Unlock()
	sendWorker(wtx, m)
	if last {
		r.mu.Lock()
		r.maybeDoneLocked()
		r.mu.Unlock()
	}
	return nil
}

func sendWorker(wtx *rpc.Tx, m rpc.Message) {
	// A failed send means the worker's session is gone; the engine aborts the request
	// with the reason when it shuts the worker down.
	if hs := forwarded(m.Headers); len(hs) > 0 {
		wtx.SendHeaders(m.Type, rpc.Raw(m.Args), hs)
	} else {
		wtx.SendRaw(m.Type, rpc.Raw(m.Args))
	}
}

// Discard implements rpc.Receiver: the client went away or revoked the channel.
func (r *request) Discard(err error) {
	r.mu.Lock()
	if r.state == reqDone {
		r.mu.Unlock()
		return
	}
	queued := r.state == reqQueued
	r.clientEnd = true
	if queued {
		// Nobody to tell; the engine takes it out of the queue, so it does not count
		// against queue-limit while it waits for a worker that may be long to come.
		r.state = reqDone
		r.mu.Unlock()
		r.timer.Stop()
		r.e.post(func() { r.e.unqueue(r) })
		return
	}
	r.mu.Unlock()
	r.e.post(func() { r.abort(ErrClientGone) })
}

// attach connects the request to the worker channel tx and flushes what the client sent
// so far. It runs on the engine loop. It reports false if the request ended meanwhile;
// the caller then gives the channel up.
func (r *request) attach(tx *rpc.Tx) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != reqQueued {
		return false
	}
	r.state, r.wtx = reqAttached, tx
	for _, m := range r.pending {
		sendWorker(tx, m)
	}
	r.pending = nil
	return true
}

// maybeDoneLocked finishes the request once both directions ended. r.mu is held.
func (r *request) maybeDoneLocked() {
	if r.state != reqAttached || !r.clientEnd || !r.workerEnd {
		return
	}
	r.state = reqDone
	r.timer.Stop()
	r.e.post(func() { r.e.release(r) })
}

// fail ends a queued request with err. It runs on the engine loop.
func (r *request) fail(err error) {
	r.mu.Lock()
	if r.state != reqQueued {
		r.mu.Unlock()
		return
	}
	r.state = reqDone
	r.mu.Unlock()
	r.timer.Stop()
	e := wire(err)
	r.e.deliver(func() { r.client.Error(e) })
}

// abort ends an attached request in both directions with err and releases its worker's
// slot. It runs on the engine loop.
func (r *request) abort(err error) {
	r.mu.Lock()
	if r.state == reqQueued {
		r.mu.Unlock()
		r.fail(err)
		return
	}
	if r.state == reqDone {
		r.mu.Unlock() // finished normally; its release is on its way
		return
	}
	r.state = reqDone
	e := wire(err)
	toClient, toWorker, wtx := !r.workerEnd, r.wtx != nil && !r.clientEnd, r.wtx
	if wtx != nil && !r.workerEnd {
		wtx.Abandon()
	}
	r.mu.Unlock()
	r.e.deliver(func() {
		if toClient {
			r.client.Error(e) // fails harmlessly if the client's upstream already ended
		}
		if toWorker {
			wtx.Error(e)
		}
	})
	r.timer.Stop()
	r.e.release(r)
}

// workerSide receives the worker's direction of a request.
type workerSide request

// Receive implements rpc.Receiver for the worker's direction. As for the client's
// direction, the send happens outside mu.
func (ws *workerSide) Receive(m rpc.Message, last bool) error {
	r := (*request)(ws)
	r.mu.Lock()
	if r.state != reqAttached {
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	r.client.SendRaw(m.Type, rpc.Raw(m.Args)) // a client that left gets nothing; fine
	if last {
		r.mu.Lock()
		r.workerEnd = true
		r.maybeDoneLocked()
		done := r.state == reqDone
		r.mu.Unlock()
		if !done {
			// The worker has answered: its slot is free even if the client never closes
			// its own direction (the original Go HTTP proxy never does). Client chunks
			// that still come are forwarded until then.
			r.e.post(func() { r.e.release(r) })
		}
	}
	return nil
}

// Discard implements rpc.Receiver. The worker's connection is gone: the engine learns it
// too, and aborts the worker's requests with the reason once it knows it.
func (ws *workerSide) Discard(error) {}
