package unicorn

import (
	"bufio"
	"cmp"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"

	"github.com/cocaine/cocaine/raft"
	"github.com/cocaine/cocaine/rpc"
)

// Snapshots are a stream of msgpack objects:
//
//	["unicorn-snapshot", 1, revision, compacted, next_lease, root_cversion, root_seq,
//	 nodes, leases, events]                                        the header, then
//	[path, value, version, cversion, create_rev, mod_rev, lease, seq]    nodes, by path
//	[id, ttl]                                                            leases, by id
//	[revision, kind, path, value, version]                 the history, oldest first
//	["end", crc32]                     IEEE CRC-32 of every byte before this object
//
// The same state always gives the same bytes, so replicas can be compared by their
// snapshots.

// SnapshotVersion is the version of the snapshot format this package writes and reads.
const SnapshotVersion = 1

const snapshotMagic = "unicorn-snapshot"

type snapNode struct {
	path string
	n    node // kids is not used
}

// storeSnapshot is a copy of the state taken by Snapshot; Persist encodes it.
type storeSnapshot struct {
	rev, compacted  Revision
	nextLease       LeaseID
	rootCV, rootSeq int64
	nodes           []snapNode
	leases          []LeaseInfo
	events          []Event
}

// Snapshot captures the state (raft.FSM). It copies the tree's metadata (values are
// shared, they are immutable) so that Persist may run concurrently with later Applies.
func (s *Store) Snapshot() (raft.Snapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	root := s.nodes["/"]
	snap := &storeSnapshot{
		rev: s.rev, compacted: s.hist.compacted, nextLease: s.nextLease,
		rootCV: root.cversion, rootSeq: root.seq,
		nodes:  make([]snapNode, 0, len(s.nodes)-1),
		leases: make([]LeaseInfo, 0, len(s.leases)),
		events: make([]Event, 0, s.hist.len()),
	}
	for p, n := range s.nodes {
		if p != "/" {
			snap.nodes = append(snap.nodes, snapNode{path: p, n: *n})
		}
	}
	for id, l := range s.leases {
		snap.leases = append(snap.leases, LeaseInfo{ID: id, TTL: l.ttl})
	}
	for i := 0; i < s.hist.len(); i++ {
		snap.events = append(snap.events, *s.hist.at(i))
	}
	return snap, nil
}

// Release implements raft.Snapshot.
func (*storeSnapshot) Release() {}

// Persist writes the snapshot (raft.Snapshot).
func (snap *storeSnapshot) Persist(w io.Writer) error {
	slices.SortFunc(snap.nodes, func(a, b snapNode) int { return strings.Compare(a.path, b.path) })
	slices.SortFunc(snap.leases, func(a, b LeaseInfo) int { return cmp.Compare(a.ID, b.ID) })
	crc := crc32.NewIEEE()
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 64<<10)
	var b []byte
	b = rpc.AppendArrayHeader(b[:0], 10)
	b = rpc.AppendString(b, snapshotMagic)
	b = rpc.AppendUint(b, SnapshotVersion)
	for _, v := range []int64{int64(snap.rev), int64(snap.compacted), int64(snap.nextLease), snap.rootCV, snap.rootSeq,
		int64(len(snap.nodes)), int64(len(snap.leases)), int64(len(snap.events))} {
		b = rpc.AppendInt(b, v)
	}
	if _, err := bw.Write(b); err != nil {
		return err
	}
	for _, sn := range snap.nodes {
		n := &sn.n
		b = rpc.AppendArrayHeader(b[:0], 8)
		b = rpc.AppendString(b, sn.path)
		b = append(b, n.value...)
		for _, v := range []int64{n.version, n.cversion, int64(n.createRev), int64(n.modRev), int64(n.lease), n.seq} {
			b = rpc.AppendInt(b, v)
		}
		if _, err := bw.Write(b); err != nil {
			return err
		}
	}
	for _, l := range snap.leases {
		b = rpc.AppendArrayHeader(b[:0], 2)
		b = rpc.AppendInt(b, int64(l.ID))
		b = rpc.AppendInt(b, l.TTL)
		if _, err := bw.Write(b); err != nil {
			return err
		}
	}
	for _, ev := range snap.events {
		b = rpc.AppendArrayHeader(b[:0], 5)
		b = rpc.AppendInt(b, int64(ev.Revision))
		b = rpc.AppendUint(b, uint64(ev.Kind))
		b = rpc.AppendString(b, ev.Path)
		b = appendValue(b, ev.Value)
		b = rpc.AppendInt(b, ev.Version)
		if _, err := bw.Write(b); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	b = rpc.AppendArrayHeader(b[:0], 2)
	b = rpc.AppendString(b, "end")
	b = rpc.AppendUint(b, uint64(crc.Sum32()))
	_, err := w.Write(b)
	return err
}

// Restore replaces the state by a snapshot's (raft.FSM). The whole snapshot is decoded
// and checked first: malformed input returns an error wrapping ErrBackend and leaves the
// state as it was. Watchers survive: each rescans the restored history from where it was.
func (s *Store) Restore(r io.Reader, index uint64) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("unicorn: restore: %w", err)
	}
	st, err := decodeSnapshot(data, s.cfg)
	if err != nil {
		return fmt.Errorf("unicorn: restore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes, s.leases, s.nextLease, s.rev, s.hist = st.nodes, st.leases, st.nextLease, st.rev, st.hist
	s.applied = index
	s.hub.restored(s.rev)
	return nil
}

// restoredState is a decoded, checked snapshot.
type restoredState struct {
	nodes     map[string]*node
	leases    map[LeaseID]*leaseEntry
	nextLease LeaseID
	rev       Revision
	hist      history
}

func decodeSnapshot(data []byte, cfg Config) (*restoredState, error) {
	d := rpc.NewDecoder(data)
	n, err := d.ArrayLen()
	if err != nil || n != 10 {
		return nil, malformed("snapshot header")
	}
	var magic string
	var version uint64
	var h [8]int64
	fs := []field{str(&magic), u64(&version)}
	for i := range h {
		fs = append(fs, i64(&h[i]))
	}
	if err := decodeAll(d, fs...); err != nil {
		return nil, malformed("snapshot header: %v", err)
	}
	if magic != snapshotMagic || version != SnapshotVersion {
		return nil, malformed("not a version %d unicorn snapshot (%q version %d)", SnapshotVersion, magic, version)
	}
	rev, compacted, nextLease := Revision(h[0]), Revision(h[1]), LeaseID(h[2])
	nNodes, nLeases, nEvents := h[5], h[6], h[7]
	switch {
	case rev < 0 || compacted < 0 || compacted > rev:
		return nil, malformed("revision %d, compacted %d", rev, compacted)
	case nextLease < 1:
		return nil, malformed("next lease %d", nextLease)
	case h[3] < 0 || h[4] < 0 || h[4] > maxSequence+1:
		return nil, malformed("root cversion %d, sequence %d", h[3], h[4])
	case nNodes < 0 || nLeases < 0 || nEvents < 0 || nNodes > int64(d.Remaining()) || nLeases > int64(d.Remaining()) ||
		nEvents > int64(d.Remaining()) || nNodes+nLeases+nEvents > int64(d.Remaining()):
		// each record takes at least a byte; checked one by one first, as the sum may overflow
		return nil, malformed("%d nodes, %d leases, %d events in %d bytes", nNodes, nLeases, nEvents, d.Remaining())
	}
	st := &restoredState{
		nodes:     make(map[string]*node, nNodes+1),
		leases:    make(map[LeaseID]*leaseEntry, nLeases),
		nextLease: nextLease, rev: rev,
	}
	st.nodes["/"] = &node{cversion: h[3], seq: h[4], kids: map[string]struct{}{}}
	prev := ""
	for i := int64(0); i < nNodes; i++ {
		var path string
		var nd node
		var lid int64
		if k, err := d.ArrayLen(); err != nil || k != 8 {
			return nil, malformed("node %d", i)
		}
		err := decodeAll(d, str(&path), raw(&nd.value), i64(&nd.version), i64(&nd.cversion),
			revision(&nd.createRev), revision(&nd.modRev), i64(&lid), i64(&nd.seq))
		if err != nil {
			return nil, malformed("node %d: %v", i, err)
		}
		nd.lease = LeaseID(lid)
		switch {
		case ValidatePath(path) != nil:
			return nil, malformed("node %d: %v", i, ValidatePath(path))
		case path <= prev:
			return nil, malformed("node %d: %s is out of order", i, quote(path))
		case checkValue(nd.value) != nil:
			return nil, malformed("node %s: value is not one msgpack object", quote(path))
		case nd.version < 0 || nd.cversion < 0 || nd.seq < 0 || nd.seq > maxSequence+1 || nd.lease < 0:
			return nil, malformed("node %s: negative version, cversion, sequence or lease", quote(path))
		case nd.createRev < 1 || nd.modRev < nd.createRev || nd.modRev > rev:
			return nil, malformed("node %s: revisions %d, %d at revision %d", quote(path), nd.createRev, nd.modRev, rev)
		}
		prev = path
		nd.kids = map[string]struct{}{}
		st.nodes[path] = &nd
	}
	var prevID LeaseID
	for i := int64(0); i < nLeases; i++ {
		var id, ttl int64
		if k, err := d.ArrayLen(); err != nil || k != 2 {
			return nil, malformed("lease %d", i)
		}
		if err := decodeAll(d, i64(&id), i64(&ttl)); err != nil {
			return nil, malformed("lease %d: %v", i, err)
		}
		if LeaseID(id) <= prevID || LeaseID(id) >= nextLease || ttl < 1 {
			return nil, malformed("lease %d: id %d, ttl %d (next id %d)", i, id, ttl, nextLease)
		}
		prevID = LeaseID(id)
		st.leases[prevID] = &leaseEntry{ttl: ttl, nodes: map[string]struct{}{}}
	}
	for path, nd := range st.nodes {
		if path == "/" {
			continue
		}
		parent := st.nodes[parentOf(path)]
		if parent == nil {
			return nil, malformed("node %s has no parent", quote(path))
		}
		if parent.lease != 0 {
			return nil, malformed("node %s is the child of an ephemeral node", quote(path))
		}
		parent.kids[baseOf(path)] = struct{}{}
		if nd.lease != 0 {
			l := st.leases[nd.lease]
			if l == nil {
				return nil, malformed("node %s is bound to lease %d, which does not exist", quote(path), nd.lease)
			}
			l.nodes[path] = struct{}{}
		}
	}
	for path, nd := range st.nodes {
		if nd.cversion < int64(len(nd.kids)) { // every child's creation counted once
			return nil, malformed("node %s has %d children but children version %d", quote(path), len(nd.kids), nd.cversion)
		}
	}
	st.hist = newHistory(cfg.HistorySize, cfg.HistoryBytes)
	st.hist.compacted = compacted
	last := compacted
	for i := int64(0); i < nEvents; i++ {
		var ev Event
		var kind uint64
		if k, err := d.ArrayLen(); err != nil || k != 5 {
			return nil, malformed("event %d", i)
		}
		if err := decodeAll(d, revision(&ev.Revision), u64(&kind), str(&ev.Path), raw(&ev.Value), i64(&ev.Version)); err != nil {
			return nil, malformed("event %d: %v", i, err)
		}
		ev.Kind = EventKind(kind)
		switch {
		case ev.Revision <= compacted || ev.Revision < last || ev.Revision > rev:
			return nil, malformed("event %d: revision %d after %d (compacted %d, revision %d)", i, ev.Revision, last, compacted, rev)
		case kind < uint64(EventCreate) || kind > uint64(EventDelete):
			return nil, malformed("event %d: kind %d", i, kind)
		case ValidatePath(ev.Path) != nil:
			return nil, malformed("event %d: %v", i, ValidatePath(ev.Path))
		case checkValue(ev.Value) != nil || ev.Version < -1:
			return nil, malformed("event %d: bad value or version", i)
		}
		if ev.Kind == EventDelete {
			ev.Value = nil
		}
		last = ev.Revision
		st.hist.push(ev)
	}
	k, err := d.ArrayLen()
	if err != nil || k != 2 {
		return nil, malformed("snapshot trailer")
	}
	end := len(data) - d.Remaining() - 1
	var tag string
	var sum uint64
	if err := decodeAll(d, str(&tag), u64(&sum)); err != nil || tag != "end" {
		return nil, malformed("snapshot trailer")
	}
	if got := crc32.ChecksumIEEE(data[:end]); uint64(got) != sum {
		return nil, malformed("snapshot checksum %08x, computed %08x", sum, got)
	}
	if d.Remaining() != 0 {
		return nil, malformed("%d bytes after the snapshot", d.Remaining())
	}
	return st, nil
}

func revision(p *Revision) field {
	return func(d *rpc.Decoder) error {
		v, err := d.Int()
		*p = Revision(v)
		return err
	}
}
