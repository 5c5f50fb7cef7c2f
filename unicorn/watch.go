package unicorn

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
)

// history is a queue of the most recent events, in revision order, bounded by a count
// and by the bytes it holds (its values are shared with the tree, but an old value stays
// alive as long as its event does).
type history struct {
	buf       []Event // buf[head:] are retained, oldest first
	head      int
	size      int // most events retained
	maxBytes  int // most bytes retained (at least one event is kept)
	bytes     int
	compacted Revision
}

func newHistory(size, maxBytes int) history { return history{size: size, maxBytes: maxBytes} }

func (h *history) len() int { return len(h.buf) - h.head }

// at returns the i-th oldest retained event.
func (h *history) at(i int) *Event { return &h.buf[h.head+i] }

// eventCost is what an event is counted for against maxBytes.
func eventCost(ev *Event) int { return len(ev.Path) + len(ev.Value) + 64 }

// push appends ev, dropping the oldest events while over a bound. Dropping part of a
// revision makes that whole revision unavailable, which compacted records.
func (h *history) push(ev Event) {
	h.buf = append(h.buf, ev)
	h.bytes += eventCost(&ev)
	for h.len() > h.size || (h.bytes > h.maxBytes && h.len() > 1) {
		old := &h.buf[h.head]
		h.compacted = max(h.compacted, old.Revision)
		h.bytes -= eventCost(old)
		*old = Event{} // let the value go
		h.head++
	}
	if h.head >= 1024 && h.head > len(h.buf)/2 { // amortized: move the retained half down
		n := copy(h.buf, h.buf[h.head:])
		clear(h.buf[n:])
		h.buf, h.head = h.buf[:n], 0
	}
}

// search returns the index of the first retained event with a revision of at least rev.
func (h *history) search(rev Revision) int {
	lo, hi := 0, h.len()
	for lo < hi {
		mid := (lo + hi) / 2
		if h.at(mid).Revision < rev {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// WatchMode says which events a Watcher gets.
type WatchMode uint8

// Watch modes.
const (
	// WatchExact: events of the node itself.
	WatchExact WatchMode = iota + 1
	// WatchPrefix: events of the node and of every node below it (recursive). "/" is
	// allowed here and watches the whole tree.
	WatchPrefix
	// WatchChildren: events of the node itself and of its direct children.
	WatchChildren
)

// hub indexes the watchers of a store so that Apply wakes only the interested ones.
// It is guarded by the Store's mu: Apply and registrations hold it for writing.
type hub struct {
	index [WatchChildren + 1]map[string]map[*Watcher]struct{} // by mode, then by path
	all   map[*Watcher]struct{}
}

func (h *hub) init() {
	if h.all != nil {
		return // watchers survive a reset (Restore): restored() resynchronizes them
	}
	for m := WatchExact; m <= WatchChildren; m++ {
		h.index[m] = map[string]map[*Watcher]struct{}{}
	}
	h.all = map[*Watcher]struct{}{}
}

func (h *hub) add(w *Watcher) {
	set := h.index[w.mode][w.path]
	if set == nil {
		set = map[*Watcher]struct{}{}
		h.index[w.mode][w.path] = set
	}
	set[w] = struct{}{}
	h.all[w] = struct{}{}
}

func (h *hub) remove(w *Watcher) {
	if set := h.index[w.mode][w.path]; set != nil {
		delete(set, w)
		if len(set) == 0 {
			delete(h.index[w.mode], w.path)
		}
	}
	delete(h.all, w)
}

// notify wakes every watcher interested in one of the events of revision rev. It never
// blocks: a watcher that is behind keeps one pending mark and one wake token.
func (h *hub) notify(rev Revision, evs []Event) {
	for i := range evs {
		p := evs[i].Path
		wakeAll(h.index[WatchExact][p], rev)
		wakeAll(h.index[WatchChildren][p], rev)
		parent := parentOf(p)
		wakeAll(h.index[WatchChildren][parent], rev)
		wakeAll(h.index[WatchPrefix][p], rev)
		for a := parent; ; a = parentOf(a) {
			wakeAll(h.index[WatchPrefix][a], rev)
			if a == "/" {
				break
			}
		}
	}
}

func wakeAll(set map[*Watcher]struct{}, rev Revision) {
	for w := range set {
		w.mark(rev)
	}
}

// restored resynchronizes every watcher after Restore replaced the state: each rescans
// the new history from its position, and one whose position is beyond the restored
// revision (the state went back in time) fails.
func (h *hub) restored(rev Revision) {
	for w := range h.all {
		switch {
		case w.last > rev:
			w.err = errorf(ErrConnectionLoss, "the store was restored to revision %d, before this watch's revision %d", rev, w.last)
		case w.last < rev:
			w.pending.Store(int64(w.last + 1))
		}
		w.wakeUp()
	}
}

// Watcher receives the events of a path from a Store. It is pull-based: Apply only marks
// it and wakes it, and the consumer reads events from the history at its own pace, so a
// slow consumer never blocks Apply; one that falls behind the history gets ErrCompacted.
// A Watcher has one consumer: Poll and Next must not be called concurrently.
type Watcher struct {
	s     *Store
	path  string
	mode  WatchMode
	start Revision // events above it are delivered

	// pending is the revision of the oldest event of interest not yet read (0: none).
	// Apply sets it (under the store's write lock); Poll takes it.
	pending atomic.Int64
	// wake holds one token, "something may be pending": Apply never blocks on it and
	// Poll re-checks pending, so one token is enough whatever happened meanwhile.
	wake chan struct{}

	// last is the revision up to which events have been read. err ends the watch. Both
	// are written by the consumer under the store's read lock, or under its write lock
	// by Restore; a Watcher has one consumer, so they need no lock of their own.
	last   Revision
	err    error
	closed bool // guarded by the store's mu
}

// errWatcherClosed is returned by Poll after Close.
var errWatcherClosed = errors.New("unicorn: watcher closed")

// Watch registers a watcher of path for the events with a revision above from. A
// negative from means "from now": the current revision. A from below the compacted
// revision fails with ErrCompacted. Close the watcher when done.
func (s *Store) Watch(path string, mode WatchMode, from Revision) (*Watcher, error) {
	if !(mode == WatchPrefix && path == "/") {
		if err := ValidatePath(path); err != nil {
			return nil, err
		}
	}
	if mode < WatchExact || mode > WatchChildren {
		return nil, errorf(ErrInvalidNodeName, "unknown watch mode %d", mode)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if from < 0 {
		from = s.rev
	}
	if from < s.hist.compacted {
		return nil, compactedError(s.rev, s.hist.compacted)
	}
	// one token: "something may be pending" (see the field's comment)
	w := &Watcher{s: s, path: path, mode: mode, start: from, last: from, wake: make(chan struct{}, 1)}
	if from < s.rev {
		w.pending.Store(int64(from + 1))
		w.wakeUp()
	}
	s.hub.add(w)
	return w, nil
}

// Start is the revision the watcher started after.
func (w *Watcher) Start() Revision { return w.start }

// Ready has a value when events may be pending; then call Poll.
func (w *Watcher) Ready() <-chan struct{} { return w.wake }

// mark records that an event of revision rev concerns w, and wakes it. The store's write
// lock is held.
func (w *Watcher) mark(rev Revision) {
	w.pending.CompareAndSwap(0, int64(rev))
	w.wakeUp()
}

func (w *Watcher) wakeUp() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Watcher) matches(p string) bool {
	switch w.mode {
	case WatchExact:
		return p == w.path
	case WatchChildren:
		return p == w.path || parentOf(p) == w.path
	}
	return w.path == "/" || p == w.path || strings.HasPrefix(p, w.path) && p[len(w.path)] == '/'
}

// Poll returns the events of interest applied since the last call, in revision order,
// without blocking; none when nothing is pending. It fails with ErrCompacted once the
// watcher fell behind the history, and then keeps failing.
func (w *Watcher) Poll() ([]Event, error) {
	s := w.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if w.closed {
		return nil, errWatcherClosed
	}
	if w.err != nil {
		return nil, w.err
	}
	p := Revision(w.pending.Swap(0))
	if p == 0 {
		return nil, nil
	}
	if p <= s.hist.compacted {
		w.err = compactedError(s.rev, s.hist.compacted)
		return nil, w.err
	}
	var out []Event
	for i := s.hist.search(p); i < s.hist.len(); i++ {
		ev := s.hist.at(i)
		if ev.Revision > w.start && w.matches(ev.Path) {
			out = append(out, *ev)
		}
	}
	w.last = max(w.last, s.rev)
	return out, nil
}

// Next blocks until there are events of interest and returns them, or fails as Poll, or
// returns ctx's error.
func (w *Watcher) Next(ctx context.Context) ([]Event, error) {
	for {
		evs, err := w.Poll()
		if err != nil || len(evs) > 0 {
			return evs, err
		}
		select {
		case <-w.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Close unregisters the watcher. Safe to call more than once.
func (w *Watcher) Close() {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if !w.closed {
		w.closed = true
		s.hub.remove(w)
	}
}
