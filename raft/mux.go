package raft

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
)

// Mux is an FSM made of parts, each an FSM of its own that sees only its commands. A
// command's first byte is the tag of its part; Sub adds it. The daemon registers one part
// per replicated component (unicorn, storage) before the Node starts.
type Mux struct {
	parts map[byte]FSM
	tags  []byte // sorted, for a deterministic snapshot
}

// NewMux returns a Mux with no parts.
func NewMux() *Mux { return &Mux{parts: map[byte]FSM{}} }

// Register adds a part under tag. It must be called before the Node starts; a tag may
// be used once.
func (m *Mux) Register(tag byte, fsm FSM) error {
	if _, ok := m.parts[tag]; ok {
		return fmt.Errorf("raft: mux tag %q registered twice", tag)
	}
	m.parts[tag] = fsm
	m.tags = append(m.tags, tag)
	slices.Sort(m.tags)
	return nil
}

// Apply routes cmd to its part. A command with an unknown tag (or none) changes nothing
// and has a nil result.
func (m *Mux) Apply(index uint64, cmd []byte) []byte {
	if len(cmd) == 0 {
		return nil
	}
	p, ok := m.parts[cmd[0]]
	if !ok {
		return nil
	}
	return p.Apply(index, cmd[1:])
}

// The mux snapshot format:
//
//	"CMX1" { tag uvarint(len) bytes }* 0x00 crc32c(everything before) [4 bytes, big endian]
//
// Parts are written in tag order; tag 0 is reserved as the terminator.
var muxMagic = []byte("CMX1")

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Snapshot captures every part.
func (m *Mux) Snapshot() (Snapshot, error) {
	s := &muxSnapshot{tags: m.tags}
	for _, tag := range m.tags {
		ps, err := m.parts[tag].Snapshot()
		if err != nil {
			s.Release()
			return nil, fmt.Errorf("raft: snapshot of part %q: %w", tag, err)
		}
		s.parts = append(s.parts, ps)
	}
	return s, nil
}

type muxSnapshot struct {
	tags  []byte
	parts []Snapshot
}

func (s *muxSnapshot) Persist(w io.Writer) error {
	crc := crc32.New(crcTable)
	bw := bufio.NewWriter(io.MultiWriter(w, crc))
	bw.Write(muxMagic)
	var buf bytes.Buffer
	for i, p := range s.parts {
		// Each part is buffered to learn its length; the state is in memory anyway.
		buf.Reset()
		if err := p.Persist(&buf); err != nil {
			return fmt.Errorf("raft: persist part %q: %w", s.tags[i], err)
		}
		bw.WriteByte(s.tags[i])
		bw.Write(binary.AppendUvarint(nil, uint64(buf.Len())))
		bw.Write(buf.Bytes())
	}
	bw.WriteByte(0)
	if err := bw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32()))
	return err
}

func (s *muxSnapshot) Release() {
	for _, p := range s.parts {
		p.Release()
	}
}

var errMuxSnapshot = errors.New("raft: malformed mux snapshot")

// Restore checks the whole snapshot (framing, checksum, that it names exactly the
// registered parts) before it hands each part its section, so a damaged stream changes
// nothing.
func (m *Mux) Restore(r io.Reader, index uint64) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("raft: read snapshot: %w", err)
	}
	sections, err := m.split(data)
	if err != nil {
		return err
	}
	for _, tag := range m.tags {
		if err := m.parts[tag].Restore(bytes.NewReader(sections[tag]), index); err != nil {
			return fmt.Errorf("raft: restore part %q: %w", tag, err)
		}
	}
	return nil
}

// split validates a mux snapshot and returns each part's section.
func (m *Mux) split(data []byte) (map[byte][]byte, error) {
	if len(data) < len(muxMagic)+5 || !bytes.Equal(data[:len(muxMagic)], muxMagic) {
		return nil, fmt.Errorf("%w: bad header", errMuxSnapshot)
	}
	body, sum := data[:len(data)-4], binary.BigEndian.Uint32(data[len(data)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", errMuxSnapshot)
	}
	rest := body[len(muxMagic):]
	sections := map[byte][]byte{}
	for {
		if len(rest) == 0 {
			return nil, fmt.Errorf("%w: missing terminator", errMuxSnapshot)
		}
		tag := rest[0]
		rest = rest[1:]
		if tag == 0 {
			break
		}
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return nil, fmt.Errorf("%w: bad length of part %q", errMuxSnapshot, tag)
		}
		if _, ok := m.parts[tag]; !ok {
			return nil, fmt.Errorf("%w: unknown part %q", errMuxSnapshot, tag)
		}
		if _, dup := sections[tag]; dup {
			return nil, fmt.Errorf("%w: part %q twice", errMuxSnapshot, tag)
		}
		sections[tag] = rest[k : k+int(n)]
		rest = rest[k+int(n):]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the terminator", errMuxSnapshot, len(rest))
	}
	for _, tag := range m.tags {
		if _, ok := sections[tag]; !ok {
			return nil, fmt.Errorf("%w: part %q is missing", errMuxSnapshot, tag)
		}
	}
	return sections, nil
}

// Sub is one Mux part's view of a Node: its proposals carry the part's tag. It has the
// methods of the consumer-side Consensus interfaces (unicorn, storage).
type Sub struct {
	n   *Node
	tag byte
}

// Sub returns the view of the Mux part registered under tag.
func (n *Node) Sub(tag byte) *Sub { return &Sub{n: n, tag: tag} }

// Propose proposes cmd to the part (see Node.Propose).
func (s *Sub) Propose(ctx context.Context, cmd []byte) ([]byte, error) {
	b := make([]byte, 0, len(cmd)+1)
	b = append(append(b, s.tag), cmd...)
	return s.n.Propose(ctx, b)
}

// ReadIndex is Node.ReadIndex.
func (s *Sub) ReadIndex(ctx context.Context, linearizable bool) (uint64, error) {
	return s.n.ReadIndex(ctx, linearizable)
}

// WaitApplied is Node.WaitApplied.
func (s *Sub) WaitApplied(ctx context.Context, index uint64) error {
	return s.n.WaitApplied(ctx, index)
}

// Leadership is Node.Leadership.
func (s *Sub) Leadership() (bool, <-chan struct{}) { return s.n.Leadership() }

// LeaderCall is Node.LeaderCall.
func (s *Sub) LeaderCall(ctx context.Context, method string, payload []byte) ([]byte, error) {
	return s.n.LeaderCall(ctx, method, payload)
}
