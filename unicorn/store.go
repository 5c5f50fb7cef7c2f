package unicorn

import (
	"cmp"
	"fmt"
	"slices"
	"sync"

	"github.com/cocaine/cocaine/raft"
)

// Revision is the store's global revision: it grows by one with every applied command
// that changes the tree. Every event of a command carries the command's revision.
type Revision int64

// LeaseID names a lease. Ids are assigned by the store, from 1 up; 0 means "no lease".
type LeaseID int64

// EventKind says what happened to a node.
type EventKind uint8

// The kinds of events.
const (
	EventCreate EventKind = iota + 1
	EventPut
	EventDelete
)

func (k EventKind) String() string {
	switch k {
	case EventCreate:
		return "create"
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Event is one change of one node. Value is the node's value after the change (one
// msgpack object; nil for a delete) and Version its version (-1 for a delete). Events
// are read-only: their byte slices are shared.
type Event struct {
	Revision Revision
	Kind     EventKind
	Path     string
	Value    []byte
	Version  int64
}

// NodeInfo is a node's value and metadata. Value is read-only.
type NodeInfo struct {
	Value          []byte // one msgpack object: nil (0xc0) for implicitly created parents
	Version        int64  // data version: 0 at creation, +1 per put
	CVersion       int64  // children version: +1 per child created or removed
	CreateRevision Revision
	ModRevision    Revision
	Lease          LeaseID // 0: persistent
	Children       int
}

// nilValue is msgpack nil, the value of implicitly created parents.
var nilValue = []byte{0xc0}

// node is one node of the tree. Values are never modified in place: a put replaces the
// slice, so readers and events may share it.
type node struct {
	value     []byte
	version   int64
	cversion  int64
	createRev Revision
	modRev    Revision
	lease     LeaseID
	seq       int64 // next sequence number of a sequential child
	kids      map[string]struct{}
}

// leaseEntry is a granted lease: its TTL and the ephemeral nodes attached to it.
type leaseEntry struct {
	ttl   int64 // seconds
	nodes map[string]struct{}
}

// Store is the replicated state: the tree of nodes, leases, the global revision and the
// recent history of events. It implements raft.FSM: Apply, Snapshot and Restore are
// called from one goroutine; every read method is safe for concurrent use with them and
// with each other, and never blocks on a watcher.
type Store struct {
	cfg Config

	mu sync.RWMutex
	// mu guards the following fields. Apply holds it for writing while it applies one
	// command; reads hold it for reading.
	nodes     map[string]*node // by path; "/" is the hidden root, never read or listed
	leases    map[LeaseID]*leaseEntry
	nextLease LeaseID
	rev       Revision
	applied   uint64
	hist      history
	hub       hub
}

var _ raft.FSM = (*Store)(nil)

// NewStore returns an empty store. Only HistorySize and HistoryBytes of cfg matter here
// (zero takes the default).
func NewStore(cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg}
	s.resetLocked()
	return s, nil
}

func (s *Store) resetLocked() {
	s.nodes = map[string]*node{"/": {kids: map[string]struct{}{}}}
	s.leases = map[LeaseID]*leaseEntry{}
	s.nextLease = 1
	s.rev = 0
	s.hist = newHistory(s.cfg.HistorySize, s.cfg.HistoryBytes)
	s.hub.init()
}

// Revision returns the current revision.
func (s *Store) Revision() Revision {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev
}

// Compacted returns the compacted revision: events with a revision above it are all
// retained, so a watch may start from any revision at or above it.
func (s *Store) Compacted() Revision {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.hist.compacted
}

// Revisions returns the current and the compacted revision, read together.
func (s *Store) Revisions() (current, compacted Revision) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev, s.hist.compacted
}

// AppliedIndex returns the raft index of the last command applied (or restored). Under
// a raft.Mux it only moves with the commands routed to this store.
func (s *Store) AppliedIndex() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.applied
}

// Get returns a node's value and version with the original's semantics: [nil, -1] for
// an absent node (value 0xc0, version -1, no error), ErrChildNotAllowed for a node with
// children, ErrInvalidPath for a bad path. rev is the revision the read saw.
func (s *Store) Get(path string) (value []byte, version int64, rev Revision, err error) {
	if err := ValidatePath(path); err != nil {
		return nil, 0, 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	value, version, err = s.getLocked(path)
	return value, version, s.rev, err
}

// getLocked is Get's semantics; s.mu must be held.
func (s *Store) getLocked(path string) ([]byte, int64, error) {
	n := s.nodes[path]
	if n == nil {
		return nilValue, -1, nil
	}
	if len(n.kids) > 0 {
		return nil, 0, errorf(ErrChildNotAllowed, "%s has %d children", quote(path), len(n.kids))
	}
	return n.value, n.version, nil
}

// Node returns a node with its metadata, and whether it exists.
func (s *Store) Node(path string) (NodeInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := s.nodes[path]
	if n == nil || path == "/" {
		return NodeInfo{}, false
	}
	return NodeInfo{
		Value: n.value, Version: n.version, CVersion: n.cversion,
		CreateRevision: n.createRev, ModRevision: n.modRev, Lease: n.lease, Children: len(n.kids),
	}, true
}

// Children returns the children version of path and its children's names, sorted, and
// the revision the read saw. An absent node gives ErrNoNode.
func (s *Store) Children(path string) (cversion int64, names []string, rev Revision, err error) {
	if err := ValidatePath(path); err != nil {
		return 0, nil, 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := s.nodes[path]
	if n == nil {
		return 0, nil, s.rev, errorf(ErrNoNode, "%s does not exist", quote(path))
	}
	names = make([]string, 0, len(n.kids))
	for k := range n.kids {
		names = append(names, k)
	}
	slices.Sort(names)
	return n.cversion, names, s.rev, nil
}

// Lease returns a lease's TTL in seconds and whether it exists.
func (s *Store) Lease(id LeaseID) (ttl int64, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l := s.leases[id]
	if l == nil {
		return 0, false
	}
	return l.ttl, true
}

// LeaseInfo describes a granted lease.
type LeaseInfo struct {
	ID    LeaseID
	TTL   int64 // seconds
	Nodes int   // ephemeral nodes attached
}

// Leases lists every granted lease, by id.
func (s *Store) Leases() []LeaseInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]LeaseInfo, 0, len(s.leases))
	for id, l := range s.leases {
		out = append(out, LeaseInfo{ID: id, TTL: l.ttl, Nodes: len(l.nodes)})
	}
	slices.SortFunc(out, func(a, b LeaseInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Apply applies one committed command (raft.FSM). It never panics: a command that does
// not decode or fails a check changes nothing and returns an error result, the same on
// every replica. The result is decoded by the Service that proposed the command.
func (s *Store) Apply(index uint64, cmd []byte) (result []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if index > s.applied {
		s.applied = index
	}
	b := &batch{s: s, rev: s.rev + 1}
	defer func() {
		// A panic here is a bug; undoing the command keeps replicas equal, since every
		// replica panics on the same command the same way. (FuzzCommand fails on it.)
		if p := recover(); p != nil {
			b.rollback()
			result = resultErr(fmt.Errorf("%w: applying a command panicked: %v", ErrBackend, p))
		}
	}()
	c, err := decodeCommand(cmd)
	if err != nil {
		return resultErr(err)
	}
	res, err := b.run(c)
	if err != nil {
		b.rollback()
		return resultErr(err)
	}
	b.commit()
	return res
}

// batch applies one command: its changes are undone if it fails, and its events share
// one revision.
type batch struct {
	s      *Store
	rev    Revision
	events []Event
	undo   []func()
}

func (b *batch) rollback() {
	for i := len(b.undo) - 1; i >= 0; i-- {
		b.undo[i]()
	}
	b.undo, b.events = nil, nil
}

// commit publishes the events: a new revision, the history, the watchers.
func (b *batch) commit() {
	if len(b.events) == 0 {
		return
	}
	s := b.s
	s.rev = b.rev
	for _, ev := range b.events {
		s.hist.push(ev)
	}
	s.hub.notify(b.rev, b.events)
}

func (b *batch) emit(kind EventKind, path string, value []byte, version int64) {
	b.events = append(b.events, Event{Revision: b.rev, Kind: kind, Path: path, Value: value, Version: version})
}

// save records n's fields so that rollback restores them.
func (b *batch) save(n *node) {
	old := *n
	b.undo = append(b.undo, func() { *n = old })
}

func (b *batch) addKid(parent *node, name string) {
	parent.kids[name] = struct{}{}
	b.undo = append(b.undo, func() { delete(parent.kids, name) })
}

func (b *batch) delKid(parent *node, name string) {
	delete(parent.kids, name)
	b.undo = append(b.undo, func() { parent.kids[name] = struct{}{} })
}

func (b *batch) setNode(path string, n *node) {
	b.s.nodes[path] = n
	b.undo = append(b.undo, func() { delete(b.s.nodes, path) })
}

func (b *batch) delNode(path string, n *node) {
	delete(b.s.nodes, path)
	b.undo = append(b.undo, func() { b.s.nodes[path] = n })
}

func (b *batch) attach(l *leaseEntry, path string) {
	l.nodes[path] = struct{}{}
	b.undo = append(b.undo, func() { delete(l.nodes, path) })
}

func (b *batch) detach(l *leaseEntry, path string) {
	delete(l.nodes, path)
	b.undo = append(b.undo, func() { l.nodes[path] = struct{}{} })
}
