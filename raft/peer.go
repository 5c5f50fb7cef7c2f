package raft

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The peer protocol carries what followers ask of the leader (forwarded proposals, read
// indexes, leader calls, joins) on the raft port, beside hashicorp's own traffic. A peer
// connection starts with peerMagic; hashicorp's messages start with a byte below 4, so
// the first byte tells them apart. Then both sides exchange frames:
//
//	uint32 length (of what follows) | op byte | uint64 request id | payload
//
// Requests are answered out of order, each by a frame with the request's id and op
// opOK or opErr; an opErr payload is a code byte and a message.
var peerMagic = [4]byte{'C', 'P', 'R', 1}

const (
	opApply      byte = 1 // cmd → uint64 index | result
	opReadIndex  byte = 2 // linearizable byte → uint64 index
	opLeaderCall byte = 3 // uvarint len | method | payload → reply
	opJoin       byte = 4 // JSON joinRequest → nothing
	opRemove     byte = 5 // JSON removeRequest → nothing
	opMembers    byte = 6 // nothing → JSON []Member
	opRestore    byte = 7 // a backup (SaveSnapshot's format) → nothing
	opJoinAny    byte = 8 // JSON joinRequest, to any server, which takes it to its leader
	opOK         byte = 0x80
	opErr        byte = 0x81
)

const (
	frameOverhead = 1 + 8           // op and id
	maxFrame      = 1<<31 - 1       // the largest length a frame may claim
	peerHandshake = 5 * time.Second // for the magic to arrive on an accepted connection
)

// Error codes of opErr, so sentinels survive the trip.
const (
	codeOther byte = iota
	codeNotLeader
	codeNoLeader
	codeIndeterminate
	codeTooLarge
	codeUnknownMethod
	codeRemote
	codeStopped
	codeBadSnapshot
	codeNotMember
)

var codeErrors = []struct {
	code byte
	err  error
}{
	{codeNotLeader, ErrNotLeader},
	{codeNoLeader, ErrNoLeader},
	{codeIndeterminate, ErrIndeterminate},
	{codeTooLarge, ErrTooLarge},
	{codeUnknownMethod, ErrUnknownMethod},
	{codeRemote, ErrRemote},
	{codeStopped, ErrStopped},
	{codeBadSnapshot, ErrBadSnapshot},
	{codeNotMember, ErrNotMember},
}

func errorCode(err error) byte {
	for _, ce := range codeErrors {
		if errors.Is(err, ce.err) {
			return ce.code
		}
	}
	return codeOther
}

// peerError rebuilds a remote error: the sentinel of its code, with the remote message.
type peerError struct {
	sentinel error
	msg      string
}

func (e *peerError) Error() string { return e.msg }
func (e *peerError) Unwrap() error { return e.sentinel }

func decodePeerError(payload []byte) error {
	if len(payload) == 0 {
		return errors.New("raft: peer sent an empty error")
	}
	var sentinel error
	for _, ce := range codeErrors {
		if ce.code == payload[0] {
			sentinel = ce.err
		}
	}
	return &peerError{sentinel: sentinel, msg: string(payload[1:])}
}

// appendFrame appends a frame header for a payload of n bytes.
func appendFrameHeader(b []byte, op byte, id uint64, n int) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(frameOverhead+n))
	b = append(b, op)
	return binary.BigEndian.AppendUint64(b, id)
}

// readFrame reads one frame; limit bounds the payload by op, before anything is
// allocated for it.
func readFrame(r *bufio.Reader, limit func(op byte) int) (op byte, id uint64, payload []byte, err error) {
	var hdr [4 + frameOverhead]byte
	if _, err = io.ReadFull(r, hdr[:]); err != nil {
		return 0, 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	op, id = hdr[4], binary.BigEndian.Uint64(hdr[5:])
	if n < frameOverhead || n > maxFrame {
		return 0, 0, nil, fmt.Errorf("raft: peer frame of %d bytes", n)
	}
	size := int(n) - frameOverhead
	if size > limit(op) {
		return 0, 0, nil, fmt.Errorf("raft: peer frame of %d bytes for op %d, the limit is %d", size, op, limit(op))
	}
	payload = make([]byte, size)
	if _, err = io.ReadFull(r, payload); err != nil {
		return 0, 0, nil, err
	}
	return op, id, payload, nil
}

// peerPool keeps one multiplexed connection per peer address.
type peerPool struct {
	dial  func(ctx context.Context, addr string) (net.Conn, error)
	limit func(op byte) int
	wg    sync.WaitGroup // reader goroutines

	mu     sync.Mutex
	conns  map[string]*peerConn
	closed bool
}

func newPeerPool(dial func(ctx context.Context, addr string) (net.Conn, error), limit func(op byte) int) *peerPool {
	return &peerPool{dial: dial, limit: limit, conns: map[string]*peerConn{}}
}

type peerReply struct {
	op      byte
	payload []byte
	err     error
}

type peerConn struct {
	pool *peerPool
	addr string
	c    net.Conn

	wmu     sync.Mutex
	w       *bufio.Writer
	writers atomic.Int32 // writers waiting for wmu: the last one flushes

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan peerReply
	err     error // set once the connection failed
}

// errConnLost is how pending calls end when their connection fails.
var errConnLost = errors.New("raft: connection to peer lost")

// call sends one request to addr and waits for its answer. A lost connection gives
// errConnLost, ctx's end ctx.Err(): in both cases the peer may have acted on it. A
// failed dial gives the dial error: the request was not sent.
func (p *peerPool) call(ctx context.Context, addr string, op byte, payload []byte) ([]byte, error) {
	pc, err := p.get(ctx, addr)
	if err != nil {
		return nil, err
	}
	ch := make(chan peerReply, 1) // one reply, sent by the reader without blocking
	pc.mu.Lock()
	if pc.err != nil {
		pc.mu.Unlock()
		return nil, pc.err
	}
	pc.nextID++
	id := pc.nextID
	pc.pending[id] = ch
	pc.mu.Unlock()

	pc.writers.Add(1)
	pc.wmu.Lock()
	pc.w.Write(appendFrameHeader(nil, op, id, len(payload)))
	pc.w.Write(payload)
	var werr error
	if pc.writers.Add(-1) == 0 {
		werr = pc.w.Flush()
	}
	pc.wmu.Unlock()
	if werr != nil {
		pc.fail(werr)
	}

	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		if r.op == opErr {
			return nil, decodePeerError(r.payload)
		}
		return r.payload, nil
	case <-ctx.Done():
		pc.mu.Lock()
		delete(pc.pending, id)
		pc.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (p *peerPool) get(ctx context.Context, addr string) (*peerConn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrStopped
	}
	if pc, ok := p.conns[addr]; ok {
		p.mu.Unlock()
		return pc, nil
	}
	p.mu.Unlock()

	// Dial outside the lock; two racing dials to one address keep the first.
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := p.dial(dctx, addr)
	if err != nil {
		return nil, fmt.Errorf("raft: dial peer %s: %w", addr, err)
	}
	if _, err := c.Write(peerMagic[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("raft: dial peer %s: %w", addr, err)
	}
	pc := &peerConn{pool: p, addr: addr, c: c, w: bufio.NewWriterSize(c, 64<<10), pending: map[uint64]chan peerReply{}}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return nil, ErrStopped
	}
	if old, ok := p.conns[addr]; ok {
		c.Close()
		return old, nil
	}
	p.conns[addr] = pc
	p.wg.Go(pc.readLoop)
	return pc, nil
}

func (pc *peerConn) readLoop() {
	r := bufio.NewReaderSize(pc.c, 64<<10)
	for {
		op, id, payload, err := readFrame(r, pc.pool.limit)
		if err != nil {
			pc.fail(err)
			return
		}
		pc.mu.Lock()
		ch, ok := pc.pending[id]
		delete(pc.pending, id)
		pc.mu.Unlock()
		if ok {
			ch <- peerReply{op: op, payload: payload}
		}
	}
}

// fail ends the connection: it leaves the pool and every pending call gets errConnLost.
func (pc *peerConn) fail(cause error) {
	pc.c.Close()
	pc.pool.mu.Lock()
	if pc.pool.conns[pc.addr] == pc {
		delete(pc.pool.conns, pc.addr)
	}
	pc.pool.mu.Unlock()
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.err == nil {
		pc.err = fmt.Errorf("%w (%s): %v", errConnLost, pc.addr, cause)
	}
	for id, ch := range pc.pending {
		ch <- peerReply{err: pc.err}
		delete(pc.pending, id)
	}
}

// close closes every connection and waits for their readers.
func (p *peerPool) close() {
	p.mu.Lock()
	p.closed = true
	conns := make([]*peerConn, 0, len(p.conns))
	for _, pc := range p.conns {
		conns = append(conns, pc)
	}
	p.mu.Unlock()
	for _, pc := range conns {
		pc.fail(ErrStopped)
	}
	p.wg.Wait()
}

// drop closes the connection to addr (re-dialled on demand): used when a server stops
// answering, so calls do not linger on a connection to a server that went away.
func (p *peerPool) drop(addr string) {
	p.mu.Lock()
	pc := p.conns[addr]
	p.mu.Unlock()
	if pc != nil {
		pc.fail(errors.New("dropped"))
	}
}
