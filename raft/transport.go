package raft

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"
)

// muxListener accepts on the raft port and sorts connections by their first byte:
// hashicorp's transport gets its own through streamLayer, peer connections go to serve.
type muxListener struct {
	ln    net.Listener
	dial  func(ctx context.Context, addr string) (net.Conn, error)
	addr  net.Addr // advertised, for hashicorp
	serve func(c net.Conn, r *bufio.Reader)
	log   *slog.Logger

	raftConns chan net.Conn // handed to hashicorp's accept loop; unbuffered: it accepts promptly
	done      chan struct{}
	once      sync.Once
	wg        sync.WaitGroup

	// Every accepted connection still open, closed by close() so that no reader (ours
	// or hashicorp's) outlives the Node.
	accepted connSet
}

func newMuxListener(ln net.Listener, advertise net.Addr, dial func(ctx context.Context, addr string) (net.Conn, error), serve func(net.Conn, *bufio.Reader), log *slog.Logger) *muxListener {
	return &muxListener{ln: ln, dial: dial, addr: advertise, serve: serve, log: log, raftConns: make(chan net.Conn), done: make(chan struct{})}
}

// run accepts until the listener is closed.
func (m *muxListener) run() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			m.log.Warn("raft accept failed", "err", err)
			select {
			case <-time.After(50 * time.Millisecond): // do not spin on a persistent error
			case <-m.done:
				return
			}
			continue
		}
		if !m.accepted.add(c) {
			return // closing
		}
		m.wg.Go(func() { m.sort(c) })
	}
}

// sort reads the first byte of c and hands it on.
func (m *muxListener) sort(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(peerHandshake))
	r := bufio.NewReaderSize(c, 64<<10)
	bc := &bufferedConn{trackedConn{c, &m.accepted}, r}
	first, err := r.Peek(1)
	if err != nil {
		bc.Close()
		return
	}
	if first[0] == peerMagic[0] {
		var magic [4]byte
		if _, err := io.ReadFull(r, magic[:]); err != nil || magic != peerMagic {
			bc.Close()
			return
		}
		c.SetReadDeadline(time.Time{})
		m.serve(bc, r)
		bc.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	select {
	case m.raftConns <- bc:
	case <-m.done:
		bc.Close()
	}
}

// close stops accepting and waits for connections being sorted or served.
func (m *muxListener) close() {
	m.once.Do(func() { close(m.done) })
	m.accepted.closeAll()
	m.ln.Close()
	m.wg.Wait()
}

// bufferedConn is an accepted connection whose first bytes were read ahead into r.
type bufferedConn struct {
	trackedConn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// connSet is a set of open connections that can all be closed at once; once it has
// been, it closes and refuses every connection added.
type connSet struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// add records c, or closes it and reports false if the set is closed.
func (s *connSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// trackedConn is a connection of a connSet, which forgets it when it is closed.
type trackedConn struct {
	net.Conn
	set *connSet
}

func (t trackedConn) Close() error {
	t.set.mu.Lock()
	delete(t.set.conns, t.Conn)
	t.set.mu.Unlock()
	return t.Conn.Close()
}

// streamLayer is hashicorp's view of the raft port.
type streamLayer struct {
	m      *muxListener
	closed chan struct{}
	once   sync.Once

	// The connections Dial made and not yet closed. hashicorp waits for a request in
	// flight to a peer that never answers (a partition that drops packets) for its
	// whole timeout, even when shutting down; closing them ends those requests at once.
	dialed connSet
}

func newStreamLayer(m *muxListener) *streamLayer {
	return &streamLayer{m: m, closed: make(chan struct{})}
}

var _ hraft.StreamLayer = (*streamLayer)(nil)

func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.m.raftConns:
		return c, nil
	case <-s.closed:
		return nil, net.ErrClosed
	case <-s.m.done:
		return nil, net.ErrClosed
	}
}

// Close only stops Accept: the listener belongs to the Node.
func (s *streamLayer) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

func (s *streamLayer) Addr() net.Addr { return s.m.addr }

func (s *streamLayer) Dial(address hraft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := s.m.dial(ctx, string(address))
	if err != nil {
		return nil, err
	}
	if !s.dialed.add(c) {
		return nil, net.ErrClosed
	}
	return trackedConn{c, &s.dialed}, nil
}

// tcpAddr is an advertised address as a net.Addr.
type tcpAddr string

func (a tcpAddr) Network() string { return "tcp" }
func (a tcpAddr) String() string  { return string(a) }
