package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// A Session is one connection: many channels multiplexed over it (protocol.md §2).
//
// Each channel has two directions that end separately ("half-close"):
//
//	peer -> us   rx: follows the graph from the first message; when it reaches a terminal
//	             state the channel leaves the session's map, and any later message on that
//	             id is a protocol violation (strict sessions) or dropped (client sessions).
//	us -> peer   Tx: follows the upstream graph (for channels the peer opened) or the
//	             dispatch graph (for channels we opened); sending after a terminal message
//	             fails locally with ErrClosedUpstream.
//
// Channel ids strictly increase per connection and are shared by both sides: the peer opens
// a channel with any id above every id seen so far; we open ours with the next id.
//
// Incoming messages are handled on the session's reader goroutine, in order. Handlers and
// Receivers must not block: work that waits hands off to a goroutine of its owner and
// replies later through its Tx, from any goroutine.
type Session struct {
	conn   net.Conn
	cfg    SessionConfig
	log    *slog.Logger
	reader *FrameReader
	w      *writer

	ctx    context.Context // cancelled when the session ends; handlers run under it
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	// openMu orders the channels this side opens: held from an id's allocation until its
	// first frame is queued (see Open).
	openMu sync.Mutex

	mu       sync.Mutex
	channels map[uint64]*channel // channels the peer may still send on
	maxID    uint64              // the highest channel id seen or allocated
	closed   bool
	err      error // why the session ended

}

// SessionConfig configures a Session.
type SessionConfig struct {
	// Dispatcher serves channels the peer opens. Nil: the peer may not open channels (a
	// pure client), and doing so is fatal.
	Dispatcher *Dispatcher
	// Strict makes messages on closed or unknown channel ids fatal, as the core does. A
	// client session drops replies to channels it has forgotten instead, as the original
	// clients do.
	Strict bool
	// MaxFrameSize bounds one incoming frame (DefaultMaxFrameSize if zero).
	MaxFrameSize int
	// MaxPending bounds the bytes queued for writing before senders block (4 MiB if zero).
	MaxPending int
	// CompressHeaders makes outgoing headers use the dynamic table (see HeaderEncoder).
	CompressHeaders bool
	// Log receives connection-level events; nil discards them.
	Log *slog.Logger
}

// shutdownGrace bounds the final flush of a session that ends cleanly.
const shutdownGrace = 5 * time.Second

// channel is the session's record of one channel.
type channel struct {
	id       uint64
	rx       *State // what the peer may send next (owned by the reader goroutine)
	receiver Receiver
	tx       *Tx
}

// Receiver gets the later messages of a channel: those after the first, for channels the
// peer opened; every reply, for channels we opened. Calls come from the session's reader
// goroutine, in order, and must not block.
type Receiver interface {
	// Receive is called for each message, after the graph has accepted it. last reports
	// that the peer's direction ended with it. An error closes the connection (use it for
	// protocol violations such as undecodable arguments).
	Receive(m Message, last bool) error
	// Discard is called when the peer's direction ends abnormally: the connection was
	// lost or closed (ErrNotConnected), or the peer revoked the channel (its error code).
	Discard(err error)
}

// Message is one message on a channel.
type Message struct {
	Type    uint64
	Name    string // from the graph
	Args    Args
	Headers []Header
}

// Err decodes an error message ([[category, code], reason]) as an *Error; it returns nil
// for other messages.
func (m Message) Err() error {
	if m.Name != "error" {
		return nil
	}
	e, err := decodeError(m.Args)
	if err != nil {
		return fmt.Errorf("rpc: malformed error reply: %w", err)
	}
	return e
}

// NewSession wraps conn. Nothing happens until Run.
func NewSession(conn net.Conn, cfg SessionConfig) *Session {
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 4 << 20
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Session{
		conn:     conn,
		cfg:      cfg,
		log:      log,
		reader:   NewFrameReader(conn, cfg.MaxFrameSize),
		w:        newWriter(conn, cfg.MaxPending),
		done:     make(chan struct{}),
		channels: make(map[uint64]*channel),
	}
	s.w.enc.Compress = cfg.CompressHeaders
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Run serves the connection until it closes, ctx is cancelled or the peer violates the
// protocol. It closes the connection, discards every open channel, and returns only when
// its goroutines have exited. The error says why the session ended (nil for a clean EOF
// or cancellation).
func (s *Session) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.shutdown(nil) })
	defer stop()

	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.w.loop(s.done); err != nil {
			s.shutdown(fmt.Errorf("rpc: write: %w", err))
		}
	})
	err := s.readLoop()
	s.shutdown(err)
	wg.Wait()
	s.conn.Close()
	s.discardAll()
	return s.Err()
}

// Close ends the session; Run returns soon after. Safe to call more than once.
func (s *Session) Close() error {
	s.shutdown(nil)
	return nil
}

// Done is closed when the session ends.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err reports why the session ended, once it has.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Context is cancelled when the session ends.
func (s *Session) Context() context.Context { return s.ctx }

// RemoteAddr is the peer's address.
func (s *Session) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

func (s *Session) shutdown(err error) {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			s.err = err
		}
		s.mu.Unlock()
		if s.err != nil {
			// A protocol violation: close at once, sending nothing (protocol.md §2.6).
			s.w.fail(ErrNotConnected)
			s.conn.Close()
		} else {
			// Wake the reader; the writer flushes what is queued before the close in Run,
			// but a peer that stopped reading must not hold the shutdown up.
			s.conn.SetWriteDeadline(time.Now().Add(shutdownGrace))
			if tc, ok := s.conn.(interface{ CloseRead() error }); ok {
				tc.CloseRead()
			} else {
				s.conn.Close()
			}
		}
		s.cancel()
		close(s.done)
	})
}

func (s *Session) discardAll() {
	s.w.fail(ErrNotConnected)
	s.mu.Lock()
	chans := s.channels
	s.channels = map[uint64]*channel{}
	s.mu.Unlock()
	for _, ch := range chans {
		if ch.receiver != nil {
			s.safeDiscard(ch.receiver, ErrNotConnected)
		}
	}
}

func (s *Session) readLoop() error {
	for {
		f, err := s.reader.Next()
		if err != nil {
			select {
			case <-s.done: // we closed it
				return nil
			default:
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil // the peer went away; not a protocol violation
			}
			return err
		}
		if err := s.handle(&f); err != nil {
			return err
		}
	}
}

// handle routes one frame (protocol.md §2.3).
func (s *Session) handle(f *Frame) error {
	s.mu.Lock()
	ch := s.channels[f.Channel]
	if ch == nil {
		if f.Channel <= s.maxID {
			s.mu.Unlock()
			if s.cfg.Strict {
				return fmt.Errorf("%w: message %d on channel %d, which is closed or was never opened (highest id %d)",
					ErrRevokedChannel, f.Type, f.Channel, s.maxID)
			}
			s.log.Debug("dropped message on a forgotten channel", "channel", f.Channel, "type", f.Type)
			return nil
		}
		s.maxID = f.Channel
		s.mu.Unlock()
		return s.open(f)
	}
	s.mu.Unlock()

	t, ok := ch.rx.Lookup(f.Type)
	if !ok {
		return fmt.Errorf("%w: message %d is not allowed on channel %d in its current state", ErrSlotNotFound, f.Type, f.Channel)
	}
	if t.Next != nil {
		ch.rx = t.Next
	}
	last := ch.rx.IsTerminal()
	if last {
		s.forget(ch.id)
	}
	if ch.receiver != nil {
		return s.safeReceive(ch.receiver, Message{Type: f.Type, Name: t.Name, Args: Args(f.Args), Headers: f.Headers}, last)
	}
	return nil
}

func (s *Session) forget(id uint64) {
	s.mu.Lock()
	delete(s.channels, id)
	s.mu.Unlock()
}

// open handles the first message of a channel the peer opens.
func (s *Session) open(f *Frame) error {
	trace, err := traceFromHeaders(f.Headers)
	if err != nil {
		return err
	}
	if f.Type >= ControlGoaway {
		return s.control(f, &Tx{s: s, id: f.Channel, trace: trace, reply: true})
	}
	d := s.cfg.Dispatcher
	if d == nil {
		return fmt.Errorf("%w: the peer opened channel %d, but this side serves nothing", ErrSlotNotFound, f.Channel)
	}
	slot, ok := d.slot(f.Type)
	if !ok {
		return fmt.Errorf("%w: method %d on channel %d", ErrSlotNotFound, f.Type, f.Channel)
	}
	if slot.method.Dispatch == nil {
		// "stay": the method's dispatch is the service's own protocol (none in core)
		return fmt.Errorf("%w: method %q has a recursive root dispatch, which is not supported", ErrUnboundDispatch, slot.method.Name)
	}
	// One allocation holds the request, its Tx and the session's channel record.
	req := &Request{
		Method:  slot.method,
		Args:    Args(f.Args),
		Headers: f.Headers,
		Trace:   trace,
		session: s,
	}
	req.tx = Tx{s: s, id: f.Channel, trace: trace, reply: true, state: slot.method.Upstream}
	req.Tx = &req.tx
	req.chrec = channel{id: f.Channel, rx: slot.method.Dispatch, tx: req.Tx}
	req.ch = &req.chrec
	ch := req.ch
	if !ch.rx.IsTerminal() {
		s.mu.Lock()
		s.channels[ch.id] = ch
		s.mu.Unlock()
	}
	return d.call(s, slot, req)
}

// control serves the control protocol (protocol.md §3.6). It is only reachable as the
// first message of a new channel.
func (s *Session) control(f *Frame, tx *Tx) error {
	tx.state = Primitive
	switch f.Type {
	case ControlPing:
		return s.replyControl(tx)
	case ControlRevoke:
		var id uint64
		var code ErrorCodeArg
		if err := Args(f.Args).Scan(&id, &code); err != nil {
			return err
		}
		s.mu.Lock()
		ch := s.channels[id]
		delete(s.channels, id)
		s.mu.Unlock()
		if ch == nil {
			s.log.Warn("revoke of an unknown channel", "channel", id)
		} else if ch.receiver != nil {
			s.safeDiscard(ch.receiver, &Error{Category: code.Category, Code: code.Code, Message: "revoked by the peer"})
		}
		return s.replyControl(tx)
	}
	name := map[uint64]string{ControlSettings: "settings", ControlGoaway: "goaway"}[f.Type]
	if name == "" {
		return fmt.Errorf("%w: control message %d", ErrSlotNotFound, f.Type)
	}
	// As in the original: declared in every graph, implemented nowhere.
	return fmt.Errorf("%w: control message %q is not implemented", ErrSlotNotFound, name)
}

func (s *Session) replyControl(tx *Tx) error {
	if err := tx.Send(Value); err != nil && !errors.Is(err, ErrNotConnected) {
		return err
	}
	return nil
}

// ErrorCodeArg decodes an error code argument [category, code].
type ErrorCodeArg struct{ Category, Code int }

// DecodeMsgpack implements ArgDecoder.
func (e *ErrorCodeArg) DecodeMsgpack(d *Decoder) error {
	n, err := d.ArrayLen()
	if err != nil {
		return err
	}
	if n < 2 {
		return fmt.Errorf("an error code is [category, code], got %d elements", n)
	}
	c, err := d.Int()
	if err != nil {
		return err
	}
	v, err := d.Int()
	if err != nil {
		return err
	}
	e.Category, e.Code = int(c), int(v)
	for i := 2; i < n; i++ {
		if err := d.Skip(); err != nil {
			return err
		}
	}
	return nil
}

func (s *Session) safeReceive(r Receiver, m Message, last bool) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("receiver panicked", "panic", p)
			err = fmt.Errorf("%w: receiver panicked: %v", ErrUncaught, p)
		}
	}()
	return r.Receive(m, last)
}

func (s *Session) safeDiscard(r Receiver, cause error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("receiver panicked on discard", "panic", p)
		}
	}()
	r.Discard(cause)
}

// Open starts a channel to the peer with method m and the encoded args (nil for []),
// registering r for the peer's replies (which may be nil when m's upstream is terminal).
// The id is the next one of the connection, and frames go out in id order.
func (s *Session) Open(m Method, args Raw, headers []Header, trace Trace, r Receiver) (*Tx, error) {
	tx := &Tx{s: s, trace: trace, headers: headers}
	ch := &channel{rx: m.Upstream, receiver: r, tx: tx}
	// openMu, not mu, is held while the first frame is queued: ids must reach the wire
	// in increasing order, and queueing blocks while the peer does not read; mu must not
	// be held then, or the reader and everyone forgetting a channel would wait too.
	s.openMu.Lock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.openMu.Unlock()
		return nil, ErrNotConnected
	}
	s.maxID++
	ch.id, tx.id = s.maxID, s.maxID
	if !ch.rx.IsTerminal() {
		s.channels[ch.id] = ch
	}
	s.mu.Unlock()
	err := tx.sendLocked(m.ID, m.Dispatch, args, nil)
	s.openMu.Unlock()
	if err != nil {
		s.forget(ch.id)
		return nil, err
	}
	return tx, nil
}

// Tx is the sending side of a channel. It follows the graph: each Send must name a message
// of the current state, and after a terminal one every Send fails with ErrClosedUpstream.
// Safe for concurrent use; sends on one Tx reach the wire in call order.
type Tx struct {
	s       *Session
	id      uint64
	trace   Trace
	headers []Header // extra headers on every frame (client channels)
	reply   bool     // a reply channel: frames carry the trace headers as the core sends them

	mu    sync.Mutex
	state *State // nil until the first message for channels we open
}

// ID is the channel id.
func (t *Tx) ID() uint64 { return t.id }

// Trace is the channel's trace context.
func (t *Tx) Trace() Trace { return t.trace }

// Closed reports whether nothing more may be sent.
func (t *Tx) Closed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state.IsTerminal()
}

// Send sends message typ with args. Errors: ErrClosedUpstream after a terminal message,
// ErrSlotNotFound for a type the current state does not have, ErrNotConnected once the
// session ended, or an encoding error.
func (t *Tx) Send(typ uint64, args ...any) error {
	var raw Raw
	if len(args) > 0 {
		var err error
		if raw, err = AppendArgs(nil, args...); err != nil {
			return err
		}
	}
	return t.SendRaw(typ, raw)
}

// SendRaw sends message typ with pre-encoded args (an array; nil for []).
func (t *Tx) SendRaw(typ uint64, args Raw) error { return t.SendHeaders(typ, args, nil) }

// SendHeaders sends message typ with pre-encoded args and extra headers for this frame
// only (after the trace headers).
func (t *Tx) SendHeaders(typ uint64, args Raw, headers []Header) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state.IsTerminal() {
		return fmt.Errorf("%w: channel %d", ErrClosedUpstream, t.id)
	}
	tr, ok := t.state.Lookup(typ)
	if !ok {
		return fmt.Errorf("%w: message %d is not allowed on channel %d now", ErrSlotNotFound, typ, t.id)
	}
	return t.sendLocked(typ, tr.Next, args, headers)
}

func (t *Tx) canSend(typ uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.state.Lookup(typ)
	return ok
}

// SendName sends the message named name in the current state.
func (t *Tx) SendName(name string, args ...any) error {
	t.mu.Lock()
	tr, ok := t.state.LookupName(name)
	t.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: no message %q on channel %d now", ErrSlotNotFound, name, t.id)
	}
	return t.Send(tr.ID, args...)
}

// sendLocked enqueues the frame and moves to next (nil: stay). t.mu (or, for the first
// message of a channel we open, s.openMu) must be held.
func (t *Tx) sendLocked(typ uint64, next *State, args Raw, extra []Header) error {
	err := t.s.w.frame(func(b []byte, enc *HeaderEncoder) ([]byte, error) {
		b = append(b, 0x94)
		b = AppendUint(b, t.id)
		b = AppendUint(b, typ)
		if len(args) == 0 {
			b = append(b, 0x90)
		} else {
			b = append(b, args...)
		}
		n := len(t.headers) + len(extra)
		switch {
		case t.reply:
			b = AppendArrayHeader(b, 3+n)
			b = appendTrace(b, t.trace)
		case t.trace.Traced():
			b = AppendArrayHeader(b, 3+n)
			b = appendTraceIndexed(b, t.trace)
		default:
			b = AppendArrayHeader(b, n)
		}
		for _, h := range t.headers {
			b = enc.AppendHeader(b, h)
		}
		for _, h := range extra {
			b = enc.AppendHeader(b, h)
		}
		return b, nil
	})
	if err != nil {
		return err
	}
	if next != nil {
		t.state = next
	}
	return nil
}

// Value sends a primitive value (or a streaming write: both are id 0).
func (t *Tx) Value(args ...any) error { return t.Send(Value, args...) }

// Write sends a streaming chunk.
func (t *Tx) Write(args ...any) error { return t.Send(Write, args...) }

// Close sends a streaming close.
func (t *Tx) Close() error { return t.Send(Close) }

// Error sends err as an error message: [[category, code], message]. err is converted with
// WireError unless it already is an *Error.
func (t *Tx) Error(err error) error {
	e, ok := err.(*Error)
	if !ok {
		e = WireError(err)
	}
	raw, _ := e.AppendMsgpack(nil)
	return t.SendRaw(Fail, raw)
}
