package raft

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	hraft "github.com/hashicorp/raft"
)

// A backup, as SaveSnapshot writes it and RestoreSnapshot reads it:
//
//	"COCAINE-SNAPSHOT\n" | uint32 len | JSON backupMeta | data (meta.Size bytes) | uint32 crc32c
//
// The checksum covers everything before it. data is the FSM snapshot exactly as raft
// stores it.
var backupMagic = []byte("COCAINE-SNAPSHOT\n")

// backupMeta describes the snapshot inside a backup.
type backupMeta struct {
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
	Size  int64  `json:"size"`
	// Servers of the configuration the snapshot had; informational (a restore keeps
	// the restoring cluster's own configuration).
	Servers []string `json:"servers"`
}

// SaveSnapshot writes a backup of this server's state to w: a fresh snapshot, or the
// latest one when nothing was applied since. Any server can take one: it first catches
// up with the leader's commit index, so the backup holds every write acknowledged before
// the call; without a leader (within an election timeout or two) it saves its replica
// as it is.
func (n *Node) SaveSnapshot(ctx context.Context, w io.Writer) error {
	if err := n.wait(ctx); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 2*n.cfg.ElectionTimeout)
	if idx, err := n.ReadIndex(rctx, false); err == nil {
		if err := n.WaitApplied(ctx, idx); err != nil {
			cancel()
			return err
		}
	} else {
		n.log.Warn("saving a snapshot of this replica without catching up with the leader", "err", err)
	}
	cancel()
	var (
		meta *hraft.SnapshotMeta
		rc   io.ReadCloser
	)
	f := n.r.Snapshot()
	err := f.Error()
	switch {
	case err == nil:
		meta, rc, err = f.Open()
	case errors.Is(err, hraft.ErrNothingNewToSnapshot):
		var list []*hraft.SnapshotMeta
		if list, err = n.snaps.List(); err == nil {
			if len(list) == 0 {
				return errors.New("raft: no snapshot to save yet")
			}
			meta, rc, err = n.snaps.Open(list[0].ID)
		}
	}
	if err != nil {
		return fmt.Errorf("raft: snapshot: %w", err)
	}
	defer rc.Close()
	bm := backupMeta{Index: meta.Index, Term: meta.Term, Size: meta.Size}
	for _, s := range meta.Configuration.Servers {
		bm.Servers = append(bm.Servers, string(s.ID)+"@"+string(s.Address))
	}
	mj, _ := json.Marshal(bm)
	crc := crc32.New(crcTable)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 256<<10)
	bw.Write(backupMagic)
	bw.Write(binary.BigEndian.AppendUint32(nil, uint32(len(mj))))
	bw.Write(mj)
	copied, err := io.Copy(bw, rc)
	if err != nil {
		return fmt.Errorf("raft: snapshot: %w", err)
	}
	if copied != meta.Size {
		return fmt.Errorf("raft: snapshot: %d bytes read, %d expected", copied, meta.Size)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	_, err = w.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32()))
	return err
}

// parseBackup checks a whole backup and returns its meta and data.
func parseBackup(b []byte) (backupMeta, []byte, error) {
	var bm backupMeta
	if len(b) < len(backupMagic)+8 || !bytes.Equal(b[:len(backupMagic)], backupMagic) {
		return bm, nil, fmt.Errorf("%w: no snapshot header", ErrBadSnapshot)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return bm, nil, fmt.Errorf("%w: checksum mismatch (truncated or damaged file)", ErrBadSnapshot)
	}
	rest := body[len(backupMagic):]
	ml := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if uint64(ml) > uint64(len(rest)) {
		return bm, nil, fmt.Errorf("%w: bad meta length", ErrBadSnapshot)
	}
	if err := json.Unmarshal(rest[:ml], &bm); err != nil {
		return bm, nil, fmt.Errorf("%w: meta: %v", ErrBadSnapshot, err)
	}
	data := rest[ml:]
	if int64(len(data)) != bm.Size {
		return bm, nil, fmt.Errorf("%w: %d bytes of state, the header says %d", ErrBadSnapshot, len(data), bm.Size)
	}
	return bm, data, nil
}

// RestoreSnapshot replaces the whole cluster's state by a backup SaveSnapshot wrote,
// through the leader (which then brings every follower to it). The cluster keeps its
// own membership. This is for disaster recovery: writes acknowledged after the backup
// was taken are lost.
func (n *Node) RestoreSnapshot(ctx context.Context, r io.Reader) error {
	b, err := io.ReadAll(io.LimitReader(r, n.cfg.MaxSnapshotSize+1))
	if err != nil {
		return fmt.Errorf("raft: read backup: %w", err)
	}
	if int64(len(b)) > n.cfg.MaxSnapshotSize {
		return fmt.Errorf("%w: larger than %d bytes (raft max snapshot size)", ErrBadSnapshot, n.cfg.MaxSnapshotSize)
	}
	if _, _, err := parseBackup(b); err != nil {
		return err
	}
	_, err = n.toLeader(ctx, false, func() ([]byte, error) { return nil, n.restoreLocal(ctx, b) }, opRestore, b)
	return err
}

func (n *Node) restoreLocal(ctx context.Context, b []byte) error {
	bm, data, err := parseBackup(b)
	if err != nil {
		return err
	}
	n.mu.Lock()
	if !n.lead.leader || !n.lead.ready {
		n.mu.Unlock()
		return ErrNotLeader
	}
	// Stop serving reads until the restored state is followed by an entry the FSM sees
	// (raft ends a restore with a no-op, which WaitApplied could not reach).
	term := n.lead.term
	n.lead.ready = false
	n.changeLocked()
	n.mu.Unlock()
	meta := &hraft.SnapshotMeta{Version: hraft.SnapshotVersionMax, Index: bm.Index, Term: bm.Term, Size: bm.Size}
	err = n.r.Restore(meta, bytes.NewReader(data), 0)
	if err != nil {
		err = fmt.Errorf("raft: restore: %w", err)
	} else {
		n.log.Info("restored a snapshot", "index", bm.Index, "bytes", bm.Size)
	}
	n.startTerm(term)
	return err
}
