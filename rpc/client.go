package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"
)

// Conn is a client connection to one service: a Session that opens channels by method
// name from the service's graph.
type Conn struct {
	session *Session
	graph   *Graph
	name    string
	done    chan struct{}
}

// ErrChannelClosed is returned by Channel.Recv after the reply stream ended.
var ErrChannelClosed = errors.New("rpc: channel closed")

// DialConfig configures a client connection.
type DialConfig struct {
	// Timeout bounds connecting to one endpoint (1 s if zero, as the Go framework).
	Timeout time.Duration
	// MaxFrameSize bounds one incoming frame (DefaultMaxFrameSize if zero).
	MaxFrameSize int
	// Log receives connection-level events; nil discards them.
	Log *slog.Logger
}

// Dial connects to the first endpoint that answers and speaks graph on it. The
// connection runs until Close or until the peer closes it.
func Dial(ctx context.Context, endpoints []Endpoint, graph *Graph, cfg DialConfig) (*Conn, error) {
	if len(endpoints) == 0 {
		return nil, fmt.Errorf("%w: no endpoints to dial", ErrServiceUnavailable)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	var errs []error
	for _, ep := range endpoints {
		dctx, cancel := context.WithTimeout(ctx, timeout)
		c, err := (&net.Dialer{}).DialContext(dctx, "tcp", ep.String())
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return NewConn(c, graph, cfg), nil
	}
	return nil, fmt.Errorf("rpc: dial: %w", errors.Join(errs...))
}

// NewConn runs a client session over c.
func NewConn(c net.Conn, graph *Graph, cfg DialConfig) *Conn {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		tc.SetKeepAlive(true)
	}
	s := NewSession(c, SessionConfig{MaxFrameSize: cfg.MaxFrameSize, Log: cfg.Log})
	conn := &Conn{session: s, graph: graph, done: make(chan struct{})}
	go func() { // the Conn's only goroutine; Close waits for it
		defer close(conn.done)
		s.Run(context.Background())
	}()
	return conn
}

// Graph is the service's graph.
func (c *Conn) Graph() *Graph { return c.graph }

// Session is the underlying session.
func (c *Conn) Session() *Session { return c.session }

// Close closes the connection and waits until its goroutines have exited. Open channels
// get ErrNotConnected.
func (c *Conn) Close() error {
	c.session.Close()
	<-c.done
	return nil
}

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

type headersKey struct{}

// WithHeaders returns ctx carrying headers that Call sends on every frame of the channel.
func WithHeaders(ctx context.Context, hs ...Header) context.Context {
	prev, _ := ctx.Value(headersKey{}).([]Header)
	return context.WithValue(ctx, headersKey{}, append(append([]Header(nil), prev...), hs...))
}

// Call opens a channel on the method named method with args. A trace in ctx (WithTrace)
// is sent on every frame of the channel; headers in ctx (WithHeaders) too.
func (c *Conn) Call(ctx context.Context, method string, args ...any) (*Channel, error) {
	m, ok := c.graph.MethodByName(method)
	if !ok {
		return nil, fmt.Errorf("rpc: service has no method %q", method)
	}
	raw, err := AppendArgs(nil, args...)
	if err != nil {
		return nil, err
	}
	return c.CallRaw(ctx, m, raw)
}

// CallRaw opens a channel on m with pre-encoded args.
func (c *Conn) CallRaw(ctx context.Context, m Method, args Raw) (*Channel, error) {
	// one token: "the queue changed" (Recv re-checks under mu)
	ch := &Channel{method: m, wake: make(chan struct{}, 1)}
	hs, _ := ctx.Value(headersKey{}).([]Header)
	trace, _ := TraceFrom(ctx)
	var r Receiver = ch
	if m.Upstream.IsTerminal() {
		r = nil
		ch.ended = true
		ch.err = ErrChannelClosed
	}
	tx, err := c.session.Open(m, args, hs, trace, r)
	if err != nil {
		return nil, err
	}
	ch.Tx = tx
	return ch, nil
}

// Channel is a call in progress: Tx sends on it (following the method's dispatch graph),
// Recv reads the replies (following its upstream graph).
type Channel struct {
	*Tx
	method Method

	// wake has room for one token: "the queue changed"; Recv re-checks under mu.
	wake  chan struct{}
	mu    sync.Mutex
	queue []Message
	ended bool  // no more messages will be queued
	err   error // returned once the queue is drained: ErrChannelClosed or the discard cause
}

// Receive implements Receiver.
func (ch *Channel) Receive(m Message, last bool) error {
	ch.mu.Lock()
	ch.queue = append(ch.queue, m)
	if last {
		ch.ended, ch.err = true, ErrChannelClosed
	}
	ch.mu.Unlock()
	ch.notify()
	return nil
}

// Discard implements Receiver.
func (ch *Channel) Discard(err error) {
	ch.mu.Lock()
	if !ch.ended {
		ch.ended, ch.err = true, err
	}
	ch.mu.Unlock()
	ch.notify()
}

func (ch *Channel) notify() {
	select {
	case ch.wake <- struct{}{}:
	default:
	}
}

// Recv returns the next reply. Error replies are returned as messages (see Message.Err);
// the error result is for the channel itself: ErrChannelClosed after the last reply,
// ErrNotConnected when the connection is gone, the revoke code, or ctx's error.
func (ch *Channel) Recv(ctx context.Context) (Message, error) {
	for {
		ch.mu.Lock()
		if len(ch.queue) > 0 {
			m := ch.queue[0]
			ch.queue[0] = Message{}
			ch.queue = ch.queue[1:]
			ch.mu.Unlock()
			return m, nil
		}
		if ch.ended {
			err := ch.err
			ch.mu.Unlock()
			return Message{}, err
		}
		ch.mu.Unlock()
		select {
		case <-ch.wake:
		case <-ctx.Done():
			return Message{}, ctx.Err()
		}
	}
}

// Get reads a primitive reply: the value's args, or the error reply as an error.
func (ch *Channel) Get(ctx context.Context) (Args, error) {
	m, err := ch.Recv(ctx)
	if err != nil {
		return nil, err
	}
	if err := m.Err(); err != nil {
		return nil, err
	}
	return m.Args, nil
}

// Endpoint is a service address as the locator publishes it: [ip, port].
type Endpoint struct {
	Host string
	Port uint16
}

func (e Endpoint) String() string { return net.JoinHostPort(e.Host, strconv.Itoa(int(e.Port))) }

// ParseEndpoint parses "host:port" (IPv6 in brackets).
func ParseEndpoint(s string) (Endpoint, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return Endpoint{}, fmt.Errorf("rpc: endpoint %q: %w", s, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return Endpoint{}, fmt.Errorf("rpc: endpoint %q: bad port: %w", s, err)
	}
	return Endpoint{Host: host, Port: uint16(p)}, nil
}

// AppendMsgpack encodes [ip, port].
func (e Endpoint) AppendMsgpack(b []byte) ([]byte, error) {
	b = append(b, 0x92)
	b = AppendString(b, e.Host)
	return AppendUint(b, uint64(e.Port)), nil
}

// DecodeMsgpack implements ArgDecoder. The address must be a literal IP, as the core
// requires; extra elements are ignored.
func (e *Endpoint) DecodeMsgpack(d *Decoder) error {
	n, err := d.ArrayLen()
	if err != nil {
		return err
	}
	if n < 2 {
		return fmt.Errorf("an endpoint is [ip, port], got %d elements", n)
	}
	if e.Host, err = d.String(); err != nil {
		return err
	}
	if net.ParseIP(e.Host) == nil {
		return fmt.Errorf("endpoint address %q is not an IP address", e.Host)
	}
	port, err := d.Uint()
	if err != nil {
		return err
	}
	if port > 65535 {
		return fmt.Errorf("endpoint port %d out of range", port)
	}
	e.Port = uint16(port)
	for i := 2; i < n; i++ {
		if err := d.Skip(); err != nil {
			return err
		}
	}
	return nil
}

// Endpoints is a list of endpoints: [[ip, port], ...].
type Endpoints []Endpoint

// DecodeMsgpack implements ArgDecoder.
func (es *Endpoints) DecodeMsgpack(d *Decoder) error {
	n, err := d.ArrayLen()
	if err != nil {
		return err
	}
	out := make(Endpoints, n)
	for i := range out {
		if err := out[i].DecodeMsgpack(d); err != nil {
			return err
		}
	}
	*es = out
	return nil
}

// AppendMsgpack implements Marshaler.
func (es Endpoints) AppendMsgpack(b []byte) ([]byte, error) {
	b = AppendArrayHeader(b, len(es))
	for _, e := range es {
		b, _ = e.AppendMsgpack(b)
	}
	return b, nil
}

// ResolveResult is what the locator answers for a service: [endpoints, version, graph].
type ResolveResult struct {
	Endpoints Endpoints
	Version   uint64
	Graph     *Graph
}

// DecodeResolve decodes the args of a resolve value.
func DecodeResolve(args Args) (ResolveResult, error) {
	var r ResolveResult
	d, n, err := args.Decoder()
	if err != nil {
		return r, err
	}
	if n < 3 {
		return r, fmt.Errorf("%w: resolve result has %d elements, want 3", ErrInvalidArgument, n)
	}
	if err := r.Endpoints.DecodeMsgpack(d); err != nil {
		return r, fmt.Errorf("rpc: resolve endpoints: %w", err)
	}
	if r.Version, err = d.Uint(); err != nil {
		return r, fmt.Errorf("rpc: resolve version: %w", err)
	}
	if r.Graph, err = DecodeGraph(d, r.Version); err != nil {
		return r, err
	}
	return r, nil
}

// LocatorGraph is the locator's protocol (version 3), which clients know without resolving
// it (protocol.md §3.5).
var LocatorGraph = ServiceGraph(3,
	Method{Name: "resolve", Dispatch: Terminal, Upstream: Primitive},
	Method{Name: "connect", Dispatch: Terminal, Upstream: Streaming},
	Method{Name: "refresh", Dispatch: Terminal, Upstream: Primitive},
	Method{Name: "cluster", Dispatch: Terminal, Upstream: Primitive},
	Method{Name: "publish", Dispatch: NewState(append([]Transition{{0, "discard", Terminal}}, ControlTransitions...)...), Upstream: Primitive},
	Method{Name: "routing", Dispatch: NewState(append([]Transition{{0, "discard", Terminal}}, ControlTransitions...)...), Upstream: Streaming},
	Method{Name: "uuid", Dispatch: Terminal, Upstream: Primitive},
)

// DefaultLocator is where clients look for the locator unless told otherwise.
var DefaultLocator = Endpoint{Host: "127.0.0.1", Port: 10053}

// Resolve asks the locator at endpoints (DefaultLocator if none) where service name lives. seed, if not empty, is
// the routing-group seed.
func Resolve(ctx context.Context, locator []Endpoint, name, seed string, cfg DialConfig) (ResolveResult, error) {
	if len(locator) == 0 {
		locator = []Endpoint{DefaultLocator}
	}
	conn, err := Dial(ctx, locator, LocatorGraph, cfg)
	if err != nil {
		return ResolveResult{}, err
	}
	defer conn.Close()
	return ResolveOn(ctx, conn, name, seed)
}

// ResolveOn resolves name over an open locator connection.
func ResolveOn(ctx context.Context, locator *Conn, name, seed string) (ResolveResult, error) {
	args := []any{name}
	if seed != "" {
		args = append(args, seed) // optional arguments are omitted, never nil
	}
	ch, err := locator.Call(ctx, "resolve", args...)
	if err != nil {
		return ResolveResult{}, err
	}
	a, err := ch.Get(ctx)
	if err != nil {
		return ResolveResult{}, fmt.Errorf("rpc: resolve %q: %w", name, err)
	}
	return DecodeResolve(a)
}

// Service resolves name through the locator (DefaultLocator if none is given) and
// connects to it.
func Service(ctx context.Context, locator []Endpoint, name string, cfg DialConfig) (*Conn, error) {
	r, err := Resolve(ctx, locator, name, "", cfg)
	if err != nil {
		return nil, err
	}
	c, err := Dial(ctx, r.Endpoints, r.Graph, cfg)
	if err != nil {
		return nil, err
	}
	c.name = name
	return c, nil
}

var _ io.Closer = (*Conn)(nil)
