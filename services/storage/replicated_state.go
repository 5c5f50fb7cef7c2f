package storage

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
)

// Limits of replicated values.
const (
	// DefaultReplicatedValueSize is the value limit of a ReplicatedState when its config
	// does not set one. It is what ZooKeeper allows a znode and a little under etcd's
	// request limit: every value is a raft log entry, sent to every host and kept in
	// memory on each.
	DefaultReplicatedValueSize = 1 << 20

	// MaxReplicatedValueSize is the most ReplicatedConfig.MaxValueSize may be, and the
	// largest value a command or snapshot may carry. It bounds what one raft entry costs:
	// the leader ships entries in batches, a follower buffers a batch whole, and a slow
	// follower's batch of large entries stalls the others behind it. Larger values belong
	// in the blob store. Never lower it: replicas would reject old log entries they once
	// applied, and diverge.
	MaxReplicatedValueSize = 4 << 20
)

// ReplicatedConfig configures a ReplicatedState. The zero value gives the defaults.
type ReplicatedConfig struct {
	// MaxValueSize is the largest value a Replicated backend over the state puts in the
	// log, in bytes; 0 means DefaultReplicatedValueSize. Larger values go to the
	// backend's blob store, or are refused without one. It is checked before a write is
	// proposed, so it may differ between hosts without the replicas diverging: a state
	// applies any committed value up to MaxReplicatedValueSize.
	MaxValueSize int
}

// Validate reports every invalid field.
func (c ReplicatedConfig) Validate() error {
	var errs []error
	if c.MaxValueSize < 0 {
		errs = append(errs, fmt.Errorf("storage: MaxValueSize (%d) must not be negative", c.MaxValueSize))
	}
	if c.MaxValueSize > MaxReplicatedValueSize {
		errs = append(errs, fmt.Errorf("storage: MaxValueSize (%d) must not exceed MaxReplicatedValueSize (%d); larger values need the blob store",
			c.MaxValueSize, MaxReplicatedValueSize))
	}
	return errors.Join(errs...)
}

// ReplicatedState is the in-memory store of the Replicated backend and the raft FSM that
// keeps it: collections of keys, each with a value and a set of tags, and per collection
// an index from each tag to the keys that carry it, so find intersects the sets of its
// tags without walking the collection.
//
// The raft layer calls Apply, Snapshot and Restore from one goroutine; reads may run on
// any goroutine at the same time. Apply is deterministic: it reads nothing but its
// command and the state, and replicas that apply the same commands hold the same state
// and write byte-identical snapshots.
//
// A ReplicatedState has the methods of raft.FSM, but this package may not import raft, so
// Snapshot returns *ReplicatedSnapshot rather than raft.Snapshot: the daemon registers it
// through a one-method adapter (see the package's wiring notes in Replicated).
//
// Values over the inline limit live in the hosts' blob stores (see Blobs); the state keeps
// a reference to each (its digest and size) in the entry, and per blob the hosts that hold
// it. A blob that no entry refers to any more is dropped from the state at once, and from
// the hosts' disks by their next collections.
type ReplicatedState struct {
	maxValueSize int // the admission limit of backends; Apply enforces MaxReplicatedValueSize

	// mu guards collections and blobs. Apply and Restore hold it to write, readers to read.
	mu          sync.RWMutex
	collections map[string]*collection // never holds an empty collection
	blobs       map[Digest]blobInfo    // exactly the blobs some entry refers to

	// blobsAdded has room for one token: "a blob may have been added since you last
	// looked", which the blob store's replication loop waits for. Apply never blocks on it.
	blobsAdded chan struct{}
}

// blobInfo is what the state knows of one blob.
type blobInfo struct {
	size    int64
	refs    int      // the entries that refer to the blob; never 0 while it is in the map
	holders []holder // sorted by host, unique, never empty; replaced whole, never modified
}

// collection is the data of one collection.
type collection struct {
	entries map[string]*entry
	index   map[string]map[string]struct{} // tag -> keys carrying it; never an empty set
}

// entry is one key's value and tags. It is never modified once stored, so snapshots and
// readers may share it; a write replaces it whole.
type entry struct {
	value []byte   // the value kept inline; never nil unless blob is set
	blob  *blobRef // the value kept in the blob store; nil for an inline value
	tags  []string // sorted, unique; nil for none
}

// NewReplicatedState returns an empty state, or an error if cfg is invalid.
func NewReplicatedState(cfg ReplicatedConfig) (*ReplicatedState, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxValueSize == 0 {
		cfg.MaxValueSize = DefaultReplicatedValueSize
	}
	return &ReplicatedState{
		maxValueSize: cfg.MaxValueSize, collections: map[string]*collection{}, blobs: map[Digest]blobInfo{},
		blobsAdded: make(chan struct{}, 1), // one token, see the field
	}, nil
}

// Apply applies one committed command (see replicated_codec.go) and returns its result:
// an encoded [] when it was applied, or [code, message] when it was rejected, in which
// case the state is unchanged. Every check happens before the first change, so a command
// is applied whole or not at all, on every replica alike. The index is not used: the store
// keeps no revisions. Apply never panics.
func (s *ReplicatedState) Apply(_ uint64, cmd []byte) []byte {
	c, err := decodeCommand(cmd)
	if err != nil {
		return appendRejectedResult(nil, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch c.op {
	case opWrite:
		// The command's bytes belong to the raft layer; the state keeps its own copy.
		value := bytes.Clone(c.value)
		if value == nil {
			value = []byte{}
		}
		s.writeLocked(c.collection, c.key, &entry{value: value, tags: c.tags})
	case opRemove:
		s.removeLocked(c.collection, c.key)
	case opWriteBlob:
		if info, ok := s.blobs[c.blob.digest]; ok && info.size != c.blob.size {
			return appendRejectedResult(nil, fmt.Errorf("%w: blob %s of %d bytes, the state has it with %d",
				ErrCorrupt, c.blob.digest, c.blob.size, info.size))
		}
		ref := c.blob
		s.writeLocked(c.collection, c.key, &entry{blob: &ref, tags: c.tags})
		for _, h := range c.holders {
			s.holdLocked(c.blob.digest, h)
		}
		s.signalBlobs()
	case opHold:
		for _, d := range c.digests {
			s.holdLocked(d, c.holders[0])
		}
	}
	return appendAppliedResult(nil)
}

// signalBlobs tells the replication loop, if it is not told already, that blobs may
// have been added.
func (s *ReplicatedState) signalBlobs() {
	select {
	case s.blobsAdded <- struct{}{}:
	default:
	}
}

// holdLocked records h as a holder of the blob d, replacing its endpoints if it is one
// already. A blob that is not in the state, or that has MaxBlobHolders other holders, is
// left alone. s.mu must be held for writing.
func (s *ReplicatedState) holdLocked(d Digest, h holder) {
	info, ok := s.blobs[d]
	if !ok {
		return
	}
	i, found := slices.BinarySearchFunc(info.holders, h.host, func(x holder, host string) int {
		return strings.Compare(x.host, host)
	})
	switch {
	case found && equalHolder(info.holders[i], h):
		return
	case found:
		info.holders = slices.Clone(info.holders)
		info.holders[i] = h
	case len(info.holders) >= MaxBlobHolders:
		return
	default:
		info.holders = slices.Insert(slices.Clone(info.holders), i, h)
	}
	s.blobs[d] = info
}

// refLocked counts one more entry referring to ref; unrefLocked one fewer, dropping the
// blob with its last reference. s.mu must be held for writing.
func (s *ReplicatedState) refLocked(ref *blobRef) {
	info := s.blobs[ref.digest]
	info.size = ref.size
	info.refs++
	s.blobs[ref.digest] = info
}

func (s *ReplicatedState) unrefLocked(ref *blobRef) {
	info := s.blobs[ref.digest]
	if info.refs--; info.refs <= 0 {
		delete(s.blobs, ref.digest)
		return
	}
	s.blobs[ref.digest] = info
}

// writeLocked stores e under name/key, replacing the previous entry and its index
// entries. s.mu must be held for writing.
func (s *ReplicatedState) writeLocked(name, key string, e *entry) {
	c := s.collections[name]
	if c == nil {
		c = newCollection()
		s.collections[name] = c
	}
	if prev := c.entries[key]; prev != nil {
		for _, tag := range prev.tags {
			if _, keep := slices.BinarySearch(e.tags, tag); !keep {
				c.unindex(tag, key)
			}
		}
	}
	for _, tag := range e.tags {
		c.indexKey(tag, key)
	}
	// Count the new reference before dropping the old one, so that rewriting a key with
	// the same blob keeps the blob's holders.
	if e.blob != nil {
		s.refLocked(e.blob)
	}
	if prev := c.entries[key]; prev != nil && prev.blob != nil {
		s.unrefLocked(prev.blob)
	}
	c.entries[key] = e
}

// removeLocked deletes name/key with its index entries, and the collection with its last
// key. A missing key is not an error. s.mu must be held for writing.
func (s *ReplicatedState) removeLocked(name, key string) {
	c := s.collections[name]
	if c == nil {
		return
	}
	prev := c.entries[key]
	if prev == nil {
		return
	}
	for _, tag := range prev.tags {
		c.unindex(tag, key)
	}
	if prev.blob != nil {
		s.unrefLocked(prev.blob)
	}
	delete(c.entries, key)
	if len(c.entries) == 0 {
		delete(s.collections, name)
	}
}

func newCollection() *collection {
	return &collection{entries: map[string]*entry{}, index: map[string]map[string]struct{}{}}
}

// indexKey records that key carries tag.
func (c *collection) indexKey(tag, key string) {
	set := c.index[tag]
	if set == nil {
		set = map[string]struct{}{}
		c.index[tag] = set
	}
	set[key] = struct{}{}
}

// unindex forgets that key carries tag, and the tag once no key does.
func (c *collection) unindex(tag, key string) {
	set := c.index[tag]
	delete(set, key)
	if len(set) == 0 {
		delete(c.index, tag)
	}
}

// read returns a copy of the value of name/key, and whether it exists. For a value kept
// in the blob store it returns the reference and the blob's holders instead (which the
// caller must not modify), and a nil value.
func (s *ReplicatedState) read(name, key string) ([]byte, *blobRef, []holder, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.collections[name]
	if c == nil {
		return nil, nil, nil, false
	}
	e := c.entries[key]
	if e == nil {
		return nil, nil, nil, false
	}
	if e.blob != nil {
		return nil, e.blob, s.blobs[e.blob.digest].holders, true
	}
	return slices.Clone(e.value), nil, nil, true // a clone of an empty value is empty, not nil
}

// blobStatus is one blob of the state, as the blob store's loops see it.
type blobStatus struct {
	ref     blobRef
	holders []holder // do not modify
}

// blobList returns every blob the state refers to, sorted by digest.
func (s *ReplicatedState) blobList() []blobStatus {
	s.mu.RLock()
	out := make([]blobStatus, 0, len(s.blobs))
	for d, info := range s.blobs {
		out = append(out, blobStatus{ref: blobRef{digest: d, size: info.size}, holders: info.holders})
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b blobStatus) int { return bytes.Compare(a.ref.digest[:], b.ref.digest[:]) })
	return out
}

// referenced reports whether some entry refers to the blob d.
func (s *ReplicatedState) referenced(d Digest) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.blobs[d]
	return ok
}

// find returns, sorted, the keys of collection name that carry every tag; never nil. It
// intersects the tags' key sets, walking only the smallest.
func (s *ReplicatedState) find(name string, tags []string) []string {
	keys := []string{}
	if len(tags) == 0 {
		return keys
	}
	tags = normalizeTags(tags)
	s.mu.RLock()
	c := s.collections[name]
	if c == nil {
		s.mu.RUnlock()
		return keys
	}
	sets := make([]map[string]struct{}, len(tags))
	for i, tag := range tags {
		if sets[i] = c.index[tag]; sets[i] == nil {
			s.mu.RUnlock()
			return keys // unknown tag: nothing carries it
		}
		if len(sets[i]) < len(sets[0]) {
			sets[0], sets[i] = sets[i], sets[0]
		}
	}
	for key := range sets[0] {
		if !inAll(sets[1:], key) {
			continue
		}
		keys = append(keys, key)
	}
	s.mu.RUnlock()
	slices.Sort(keys)
	return keys
}

// inAll reports whether key is in every set.
func inAll(sets []map[string]struct{}, key string) bool {
	for _, set := range sets {
		if _, ok := set[key]; !ok {
			return false
		}
	}
	return true
}

// Snapshot captures the state for Persist. It copies the map of every collection, not the
// values, which are immutable; its cost is proportional to the number of keys, and Apply
// waits for it.
func (s *ReplicatedState) Snapshot() (*ReplicatedSnapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	snap := &ReplicatedSnapshot{
		collections: make(map[string]map[string]*entry, len(s.collections)),
		blobs:       maps.Clone(s.blobs), // holder lists are never modified in place
	}
	for name, c := range s.collections {
		snap.collections[name] = maps.Clone(c.entries)
	}
	return snap, nil
}

// Restore replaces the whole state by the one a snapshot persisted. It reads and checks
// the entire stream before it changes anything: malformed input is an error wrapping
// ErrCorrupt (or ErrUnsupportedVersion for a snapshot of another format version), a
// failing reader's error is returned wrapped, and in both cases the previous state stays.
// The index is not used. Restore never panics, and never allocates much more than the
// size of the data it reads.
func (s *ReplicatedState) Restore(r io.Reader, _ uint64) error {
	collections, blobs, err := readSnapshot(r)
	if err != nil {
		if errors.Is(err, ErrInvalidName) || errors.Is(err, ErrTooLarge) {
			// A name or value the store could never have held: the snapshot is corrupt.
			err = fmt.Errorf("%w: %s", ErrCorrupt, strings.TrimPrefix(err.Error(), "storage: "))
		}
		return &opError{op: "restore", name: "snapshot", err: err}
	}
	s.mu.Lock()
	s.collections, s.blobs = collections, blobs
	s.mu.Unlock()
	s.signalBlobs()
	return nil
}

// readSnapshot decodes a snapshot stream into the collections and blobs it holds.
func readSnapshot(r io.Reader) (map[string]*collection, map[Digest]blobInfo, error) {
	sr := newSnapshotReader(r)
	h, err := sr.header()
	if err != nil {
		return nil, nil, err
	}
	collections := map[string]*collection{}
	blobs := map[Digest]blobInfo{} // refs and sizes from the entries, holders from the records
	prevName := ""
	// The counts come from the input; the loops allocate only as records arrive.
	for i := range h.collections {
		name, keys, err := sr.collection()
		if err != nil {
			return nil, nil, err
		}
		if i > 0 && name <= prevName {
			return nil, nil, fmt.Errorf("%w: snapshot collections out of order at %s", ErrCorrupt, displayName(name))
		}
		prevName = name
		c := newCollection()
		prevKey := ""
		for j := range keys {
			key, e, err := sr.entry(h.version)
			if err != nil {
				return nil, nil, err
			}
			if j > 0 && key <= prevKey {
				return nil, nil, fmt.Errorf("%w: snapshot keys out of order at %s", ErrCorrupt, keyName(name, key))
			}
			prevKey = key
			if e.blob != nil {
				info, seen := blobs[e.blob.digest]
				if seen && info.size != e.blob.size {
					return nil, nil, fmt.Errorf("%w: blob %s with sizes %d and %d in the snapshot", ErrCorrupt, e.blob.digest, info.size, e.blob.size)
				}
				blobs[e.blob.digest] = blobInfo{size: e.blob.size, refs: info.refs + 1}
			} else {
				// The reader's buffer holds many records; a clone keeps only this value alive.
				e.value = bytes.Clone(e.value)
				if e.value == nil {
					e.value = []byte{}
				}
			}
			c.entries[key] = e
			for _, tag := range e.tags {
				c.indexKey(tag, key)
			}
		}
		collections[name] = c
	}
	if h.blobs != uint64(len(blobs)) {
		return nil, nil, fmt.Errorf("%w: the snapshot announces %d blobs, its entries refer to %d", ErrCorrupt, h.blobs, len(blobs))
	}
	var prev Digest
	for i := range h.blobs {
		ref, holders, err := sr.blob()
		if err != nil {
			return nil, nil, err
		}
		if i > 0 && bytes.Compare(ref.digest[:], prev[:]) <= 0 {
			return nil, nil, fmt.Errorf("%w: snapshot blobs out of order at %s", ErrCorrupt, ref.digest)
		}
		prev = ref.digest
		info, ok := blobs[ref.digest]
		if !ok || info.size != ref.size {
			return nil, nil, fmt.Errorf("%w: snapshot blob %s of %d bytes is not the one its entries refer to", ErrCorrupt, ref.digest, ref.size)
		}
		info.holders = holders
		blobs[ref.digest] = info
	}
	if err := sr.end(); err != nil {
		return nil, nil, err
	}
	return collections, blobs, nil
}

// ReplicatedSnapshot is a point-in-time copy of a ReplicatedState. It implements
// raft.Snapshot.
type ReplicatedSnapshot struct {
	collections map[string]map[string]*entry // shared entries, never modified
	blobs       map[Digest]blobInfo
}

// snapshotChunk is the write size of Persist: large enough that the sink sees few writes,
// small next to the state it copies.
const snapshotChunk = 64 << 10

// Persist writes the snapshot stream (see replicated_codec.go) to w. It may run
// concurrently with Apply, and more than once.
func (p *ReplicatedSnapshot) Persist(w io.Writer) error {
	bw := bufio.NewWriterSize(w, snapshotChunk)
	buf := appendSnapshotHeader(nil, len(p.collections), len(p.blobs))
	if _, err := bw.Write(buf); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(p.collections)) {
		entries := p.collections[name]
		buf = appendCollectionRecord(buf[:0], name, len(entries))
		if _, err := bw.Write(buf); err != nil {
			return err
		}
		for _, key := range slices.Sorted(maps.Keys(entries)) {
			e := entries[key]
			if e.blob != nil {
				buf = appendBlobEntryHead(buf[:0], key, *e.blob)
			} else {
				// [key, value, tags], with the value written from where it is, not
				// copied into buf first.
				buf = appendEntryHead(buf[:0], key, len(e.value))
				if _, err := bw.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
				if _, err := bw.Write(e.value); err != nil {
					return err
				}
			}
			buf = appendTagList(buf, e.tags)
			if _, err := bw.Write(buf); err != nil {
				return err
			}
		}
	}
	digests := slices.SortedFunc(maps.Keys(p.blobs), func(a, b Digest) int { return bytes.Compare(a[:], b[:]) })
	for _, d := range digests {
		buf = appendBlobRecord(buf[:0], d, p.blobs[d])
		if _, err := bw.Write(buf); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Release does nothing: the snapshot holds only memory, which it gives up when it is no
// longer referenced.
func (p *ReplicatedSnapshot) Release() {}
