package raft

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	hraft "github.com/hashicorp/raft"
)

// adapter is the hashicorp FSM: it opens envelopes, applies their commands to the FSM in
// order, and tracks the index the FSM has applied for WaitApplied. hashicorp calls it
// from its FSM goroutine only (Persist of a snapshot aside).
type adapter struct {
	fsm FSM
	log *slog.Logger

	applied atomic.Uint64 // last log index whose effect the FSM holds

	mu      sync.Mutex
	advance chan struct{} // closed (and replaced) whenever applied moves
}

func newAdapter(fsm FSM, log *slog.Logger) *adapter {
	return &adapter{fsm: fsm, log: log, advance: make(chan struct{})}
}

// batchResult is what Apply returns for one log entry: a result per command.
type batchResult [][]byte

func (a *adapter) Apply(l *hraft.Log) any {
	r := a.applyLog(l)
	a.setApplied(l.Index)
	return r
}

func (a *adapter) ApplyBatch(ls []*hraft.Log) []any {
	out := make([]any, len(ls))
	for i, l := range ls {
		if l.Type == hraft.LogCommand {
			out[i] = a.applyLog(l)
		}
	}
	if len(ls) > 0 {
		a.setApplied(ls[len(ls)-1].Index)
	}
	return out
}

// StoreConfiguration is called (without batching) for configuration entries; they
// count as applied so WaitApplied on their index returns.
func (a *adapter) StoreConfiguration(index uint64, _ hraft.Configuration) { a.setApplied(index) }

func (a *adapter) applyLog(l *hraft.Log) batchResult {
	cmds, err := decodeEnvelope(l.Data)
	if err != nil {
		// Only this package writes entries, so this is a damaged log or a newer
		// version's entry. Every replica skips it alike.
		a.log.Error("skipping undecodable log entry", "index", l.Index, "err", err)
		return nil
	}
	out := make(batchResult, len(cmds))
	for i, c := range cmds {
		out[i] = a.fsm.Apply(l.Index, c)
	}
	return out
}

func (a *adapter) setApplied(index uint64) {
	a.applied.Store(index)
	a.mu.Lock()
	close(a.advance)
	a.advance = make(chan struct{})
	a.mu.Unlock()
}

// waitChan returns the channel closed at the next advance.
func (a *adapter) waitChan() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.advance
}

// The adapter's snapshot is the FSM's, prefixed with the index the FSM had applied
// when it was taken (8 bytes, big endian): hashicorp's Restore does not say which
// index a snapshot holds, and WaitApplied must know after a restore.
func (a *adapter) Snapshot() (hraft.FSMSnapshot, error) {
	s, err := a.fsm.Snapshot()
	if err != nil {
		return nil, err
	}
	return &adapterSnapshot{s: s, index: a.applied.Load()}, nil
}

type adapterSnapshot struct {
	s     Snapshot
	index uint64
}

func (s *adapterSnapshot) Persist(sink hraft.SnapshotSink) error {
	if _, err := sink.Write(binary.BigEndian.AppendUint64(nil, s.index)); err != nil {
		sink.Cancel()
		return err
	}
	if err := s.s.Persist(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *adapterSnapshot) Release() { s.s.Release() }

func (a *adapter) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var hdr [8]byte
	if _, err := io.ReadFull(rc, hdr[:]); err != nil {
		return fmt.Errorf("raft: snapshot header: %w", err)
	}
	index := binary.BigEndian.Uint64(hdr[:])
	if err := a.fsm.Restore(rc, index); err != nil {
		return err
	}
	a.setApplied(index)
	return nil
}
