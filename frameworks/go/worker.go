package cocaine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// Errors of Worker.Run.
var (
	// ErrDisowned: the node did not echo a heartbeat in time.
	ErrDisowned = errors.New("cocaine: disowned by the node")
	// ErrDisconnected: the connection to the node ended without a terminate.
	ErrDisconnected = errors.New("cocaine: disconnected from the node")
)

// Error codes the worker itself sends in the worker category (42).
const (
	CodeEventNotFound = 1   // no handler for the event (plugins.md §2.9)
	CodePanic         = 100 // the handler panicked, as the original Go framework
)

// Handler serves one event. The response is closed when it returns.
type Handler func(ctx context.Context, req Request, resp Response)

// Worker runs handlers for the events the node sends.
type Worker struct {
	cfg  WorkerConfig
	log  *slog.Logger
	conn net.Conn

	mu        sync.Mutex
	handlers  map[string]Handler
	fallback  Handler
	terminate func(ctx context.Context)
	running   bool

	session  *rpc.Session
	inflight sync.WaitGroup
}

// NewWorker parses the process's arguments (os.Args) and connects to the node.
func NewWorker() (*Worker, error) {
	cfg, err := ParseArgs(os.Args[1:])
	if err != nil {
		return nil, err
	}
	return NewWorkerConfig(cfg, nil)
}

// NewWorkerConfig connects to the node at cfg.Endpoint. log (nil discards) gets the
// worker's own events; an app logs through the logging service or its output.
func NewWorkerConfig(cfg WorkerConfig, log *slog.Logger) (*Worker, error) {
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 10 * time.Second
	}
	if cfg.DisownTimeout <= 0 {
		cfg.DisownTimeout = 5 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conn, err := net.Dial("unix", cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("cocaine: connect to the node: %w", err)
	}
	return &Worker{cfg: cfg, log: log, conn: conn, handlers: map[string]Handler{}}, nil
}

// On registers h for event. Register handlers before Run.
func (w *Worker) On(event string, h Handler) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.handlers[event] = h
}

// SetFallbackHandler serves events without a handler of their own.
func (w *Worker) SetFallbackHandler(h Handler) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.fallback = h
}

// SetTerminationHandler runs fn when the node asks the worker to stop, before Run
// returns; fn gets a context that ends after 5 s.
func (w *Worker) SetTerminationHandler(fn func(ctx context.Context)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.terminate = fn
}

// UUID is the worker's id.
func (w *Worker) UUID() string { return w.cfg.UUID }

// Config is the worker's configuration.
func (w *Worker) Config() WorkerConfig { return w.cfg }

// Protocol on the worker's connection (plugins.md §2.9).
var (
	control = rpc.NewState(
		rpc.Transition{ID: 0, Name: "heartbeat", Next: nil},
		rpc.Transition{ID: 1, Name: "terminate", Next: rpc.Terminal},
	)
	handshake = rpc.Method{ID: 0, Name: "handshake", Dispatch: control, Upstream: control}
	// workerGraph is what the node opens on the worker: invoke, then streams both ways.
	workerGraph = rpc.MustGraph(1, rpc.Method{ID: 0, Name: "invoke", Dispatch: rpc.Streaming, Upstream: rpc.Streaming})
)

// Run handshakes, heartbeats and serves events until the node sends terminate (nil),
// ctx is cancelled (nil, after telling the node), the node stops echoing heartbeats
// (ErrDisowned) or the connection ends (ErrDisconnected). It waits for running handlers
// to return, for up to 5 s after a terminate. Call it once.
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.running {
		w.mu.Unlock()
		return errors.New("cocaine: Run called twice")
	}
	w.running = true
	w.mu.Unlock()

	d := rpc.NewDispatcher(workerGraph, nil, w.log)
	d.MustHandle("invoke", w.invoke)
	s := rpc.NewSession(w.conn, rpc.SessionConfig{Dispatcher: d, Log: w.log})
	w.session = s
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.Run(context.Background()) })
	defer s.Close()

	ctl := &controlRx{
		echo: make(chan struct{}, 1), // one token: "an echo came"; more would say nothing new
		term: make(chan [2]any, 1),   // the one terminate the node sends
		gone: make(chan struct{}),
	}
	tx, err := s.Open(handshake, mustArgs(w.cfg.UUID), nil, rpc.Trace{}, ctl)
	if err != nil {
		return fmt.Errorf("cocaine: handshake: %w", err)
	}
	beat := time.NewTicker(w.cfg.HeartbeatInterval)
	defer beat.Stop()
	var disown <-chan time.Time
	sendBeat := func() {
		if tx.Send(0) == nil && disown == nil {
			disown = time.After(w.cfg.DisownTimeout)
		}
	}
	sendBeat()
	for {
		select {
		case <-beat.C:
			sendBeat()
		case <-ctl.echo:
			disown = nil
		case <-disown:
			return ErrDisowned
		case t := <-ctl.term:
			w.stopping(t, tx)
			return nil
		case <-ctl.gone:
			return ErrDisconnected
		case <-s.Done():
			return ErrDisconnected
		case <-ctx.Done():
			tx.Send(1, 0, "worker stopped") // tell the node this is on purpose
			w.drain(5 * time.Second)
			return nil
		}
	}
}

// stopping runs the termination handler, echoes the terminate and waits for handlers.
func (w *Worker) stopping(t [2]any, tx *rpc.Tx) {
	w.mu.Lock()
	fn := w.terminate
	w.mu.Unlock()
	if fn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		fn(ctx)
		cancel()
	}
	w.drain(5 * time.Second)
	tx.Send(1, t[0], t[1])
}

// drain waits for running handlers, at most d.
func (w *Worker) drain(d time.Duration) {
	done := make(chan struct{})
	go func() { w.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

func mustArgs(args ...any) rpc.Raw {
	b, err := rpc.AppendArgs(nil, args...)
	if err != nil {
		panic(err) // strings and ints only: cannot fail
	}
	return b
}

// controlRx receives channel 1: heartbeat echoes and the node's terminate.
type controlRx struct {
	echo chan struct{}
	term chan [2]any
	gone chan struct{}
	once sync.Once
}

func (c *controlRx) Receive(m rpc.Message, last bool) error {
	switch m.Type {
	case 0:
		select {
		case c.echo <- struct{}{}:
		default:
		}
	case 1:
		var code int64
		var reason string
		if err := m.Args.Scan(&code, rpc.Optional(&reason)); err != nil {
			return err
		}
		select {
		case c.term <- [2]any{code, reason}:
		default:
		}
	}
	return nil
}

func (c *controlRx) Discard(error) { c.once.Do(func() { close(c.gone) }) }

// invoke starts a handler for a channel the node opened.
func (w *Worker) invoke(ctx context.Context, req *rpc.Request) error {
	var event string
	if err := req.Args.Scan(&event); err != nil {
		return err
	}
	r := newRequest(event, req.Headers)
	req.Receive(r)
	resp := &response{tx: req.Tx}
	w.mu.Lock()
	h, ok := w.handlers[event]
	if !ok {
		h = w.fallback
	}
	w.mu.Unlock()
	if h == nil {
		return resp.ErrorMsg(CodeEventNotFound, fmt.Sprintf("there is no handler for an event %q", event))
	}
	w.inflight.Go(func() { // Run drains inflight before it returns on terminate
		defer func() {
			if p := recover(); p != nil {
				w.log.Error("handler panicked", "event", event, "panic", p, "stack", string(debug.Stack()))
				resp.ErrorMsg(CodePanic, fmt.Sprintf("Event: '%s', recover: %v", event, p))
			}
			resp.Close()
		}()
		h(ctx, r, resp)
	})
	return nil
}

// Request is the client's side of an event: the chunks it streams.
type Request interface {
	// Event is the event's name.
	Event() string
	// Headers are the headers the client sent with the event.
	Headers() []rpc.Header
	// Read returns the next chunk. It returns io.EOF after the client closed its
	// stream, the client's *rpc.Error if it sent one, or ctx's error.
	Read(ctx context.Context) ([]byte, error)
	// ReadAll reads every chunk until the client closes and returns them joined.
	ReadAll(ctx context.Context) ([]byte, error)
}

// Response is the worker's side: chunks back to the client, then close or an error.
type Response interface {
	io.WriteCloser
	// ErrorMsg ends the response with an error in the worker category (42).
	ErrorMsg(code int, message string) error
}

type request struct {
	event   string
	headers []rpc.Header

	// wake has room for one token: "the queue changed"; Read re-checks under mu.
	wake   chan struct{}
	mu     sync.Mutex
	chunks [][]byte
	end    error // io.EOF or the client's error, once its stream ended
}

func newRequest(event string, hs []rpc.Header) *request {
	return &request{event: event, headers: hs, wake: make(chan struct{}, 1)} // see the field
}

func (r *request) Event() string         { return r.event }
func (r *request) Headers() []rpc.Header { return r.headers }

// Receive implements rpc.Receiver.
func (r *request) Receive(m rpc.Message, last bool) error {
	r.mu.Lock()
	switch m.Type {
	case rpc.Write:
		var chunk []byte
		if err := m.Args.Scan(&chunk); err != nil {
			r.mu.Unlock()
			return err
		}
		r.chunks = append(r.chunks, chunk)
	case rpc.Fail:
		if err := m.Err(); err != nil {
			r.end = err
		}
	case rpc.Close:
		r.end = io.EOF
	}
	if last && r.end == nil {
		r.end = io.EOF
	}
	r.mu.Unlock()
	r.notify()
	return nil
}

// Discard implements rpc.Receiver.
func (r *request) Discard(err error) {
	r.mu.Lock()
	if r.end == nil {
		r.end = err
	}
	r.mu.Unlock()
	r.notify()
}

func (r *request) notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *request) Read(ctx context.Context) ([]byte, error) {
	for {
		r.mu.Lock()
		if len(r.chunks) > 0 {
			c := r.chunks[0]
			r.chunks[0] = nil
			r.chunks = r.chunks[1:]
			r.mu.Unlock()
			return c, nil
		}
		if r.end != nil {
			err := r.end
			r.mu.Unlock()
			return nil, err
		}
		r.mu.Unlock()
		select {
		case <-r.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (r *request) ReadAll(ctx context.Context) ([]byte, error) {
	var out []byte
	for {
		c, err := r.Read(ctx)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, c...)
	}
}

type response struct{ tx *rpc.Tx }

func (r *response) Write(p []byte) (int, error) {
	if err := r.tx.Write(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (r *response) Close() error { return r.tx.Close() }

func (r *response) ErrorMsg(code int, message string) error {
	return r.tx.Error(&rpc.Error{Category: rpc.CategoryWorker, Code: code, Message: message})
}
