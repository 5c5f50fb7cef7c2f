package logging

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Names of the metafilters that always exist.
const (
	// DefaultLogger holds the configured default filters and decides for every
	// record whose own metafilter is missing or has no live filters.
	DefaultLogger = "default"
	// CoreLogger is where filters for the daemon's own logs go. It exists from the
	// start and is never pruned, as in the original, where the core log filter keeps
	// a reference to it.
	CoreLogger = "core"
)

// Dispositions of a filter: where it was set.
const (
	DispositionLocal   = 0 // set_filter: this node only
	DispositionCluster = 1 // set_cluster_filter: stored in unicorn, applied on every node
)

// FilterInfo describes one registered filter, as list_filters reports it.
type FilterInfo struct {
	Logger      string // metafilter name: a prefix of the backends it applies to
	Filter      Filter
	ID          uint64
	Deadline    time.Time // the filter is dropped after this; zero means never
	Disposition int       // DispositionLocal or DispositionCluster
}

// DeadlineUnix returns the deadline in Unix seconds, the form list_filters and the
// unicorn copy use. A filter that never expires reports MaxInt64, as the original
// stores its default filters with that deadline.
func (fi FilterInfo) DeadlineUnix() uint64 {
	if fi.Deadline.IsZero() {
		return math.MaxInt64
	}
	if s := fi.Deadline.Unix(); s > 0 {
		return uint64(s)
	}
	return 0
}

// expired reports whether fi is past its deadline at now. The deadline itself is
// still live, as in the original (now > deadline).
func (fi FilterInfo) expired(now time.Time) bool {
	return !fi.Deadline.IsZero() && now.After(fi.Deadline)
}

// Counter is a snapshot of one metafilter's decisions.
type Counter struct {
	Accepted, Rejected uint64
}

type counter struct {
	accepted, rejected atomic.Uint64
}

// metafilter is the set of filters registered under one logger name; it accepts a
// record when any live filter does.
type metafilter struct {
	name    string
	filters []FilterInfo // in the order they were added
	counts  *counter
}

func (m *metafilter) live(now time.Time) bool {
	for i := range m.filters {
		if !m.filters[i].expired(now) {
			return true
		}
	}
	return false
}

func (m *metafilter) accept(r *Record, now time.Time) bool {
	for i := range m.filters {
		if !m.filters[i].expired(now) && m.filters[i].Filter.Accept(r) {
			return true
		}
	}
	return false
}

// Filters is the registry of metafilters the logging service filters records with.
// A record is judged by the metafilter whose name is the longest plain string prefix
// of its backend ("app/" covers "app/echo" and "apple"); when there is none, or that
// one has no live filters, the default metafilter decides. There is no fallback to a
// shorter prefix: a live "app/echo" metafilter that rejects a record is final even
// when "app/" would accept it.
//
// All methods are safe for concurrent use.
type Filters struct {
	now func() time.Time

	// mu guards the following fields. Accept takes it shared, so records are
	// filtered in parallel; everything that changes the set of filters takes it
	// exclusively. Filters are immutable, so applying one under the read lock is safe.
	mu    sync.RWMutex
	metas map[string]*metafilter
	ids   map[uint64]string // live filter id -> metafilter name, for unique ids and Remove
	// counts outlives pruned metafilters so the accepted/rejected totals per name
	// stay monotonic when a logger's filters come and go.
	counts map[string]*counter
}

// NewFilters returns a registry whose default metafilter holds defaults (never
// expiring, local) and whose core metafilter is empty. now is the clock Add uses for
// deadlines; nil means time.Now.
func NewFilters(defaults []Filter, now func() time.Time) *Filters {
	if now == nil {
		now = time.Now
	}
	fs := &Filters{
		now:    now,
		metas:  make(map[string]*metafilter),
		ids:    make(map[uint64]string),
		counts: make(map[string]*counter),
	}
	// No lock: fs is not shared yet.
	fs.metafilterLocked(DefaultLogger)
	fs.metafilterLocked(CoreLogger)
	for _, f := range defaults {
		fs.insertLocked(FilterInfo{Logger: DefaultLogger, Filter: f, ID: fs.newIDLocked()})
	}
	return fs
}

// Add registers f under logger until now+ttl and returns its id: random, non-zero
// and unique among registered filters. A negative ttl counts as zero, which keeps
// the filter for the current instant only. f must not be nil.
func (fs *Filters) Add(logger string, f Filter, ttl time.Duration, disposition int) uint64 {
	if f == nil {
		panic("logging: Filters.Add with a nil filter")
	}
	deadline := fs.now().Add(max(ttl, 0))
	fs.mu.Lock()
	defer fs.mu.Unlock()
	id := fs.newIDLocked()
	fs.insertLocked(FilterInfo{Logger: logger, Filter: f, ID: id, Deadline: deadline, Disposition: disposition})
	return id
}

// Insert registers a filter whose id was chosen elsewhere: a cluster filter read
// back from unicorn. It reports false, changing nothing, if the id is taken or
// info.Filter is nil.
func (fs *Filters) Insert(info FilterInfo) bool {
	if info.Filter == nil || info.ID == 0 {
		return false
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if _, ok := fs.ids[info.ID]; ok {
		return false
	}
	fs.insertLocked(info)
	return true
}

// Remove drops the filter with the given id, default filters included, and reports
// whether it was registered. An expired filter that Prune has not dropped yet is
// still registered.
func (fs *Filters) Remove(id uint64) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	_, ok := fs.removeLocked(id)
	return ok
}

// has reports whether a filter is registered under id.
func (fs *Filters) has(id uint64) bool {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	_, ok := fs.ids[id]
	return ok
}

// lookup returns the filter registered under id.
func (fs *Filters) lookup(id uint64) (FilterInfo, bool) {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	name, ok := fs.ids[id]
	if !ok {
		return FilterInfo{}, false
	}
	i := slices.IndexFunc(fs.metas[name].filters, func(fi FilterInfo) bool { return fi.ID == id })
	return fs.metas[name].filters[i], true
}

// syncCluster replaces every cluster filter with infos in one step, so no record is
// judged by a mix of the old and the new set. An info whose id a local filter holds
// is skipped (the ids are random 64-bit numbers: that is a corrupt store, not a race).
func (fs *Filters) syncCluster(infos []FilterInfo) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, m := range fs.metas {
		m.filters = slices.DeleteFunc(m.filters, func(fi FilterInfo) bool {
			if fi.Disposition == DispositionCluster {
				delete(fs.ids, fi.ID)
				return true
			}
			return false
		})
	}
	for _, info := range infos {
		if _, taken := fs.ids[info.ID]; !taken {
			fs.insertLocked(info)
		}
	}
}

// putCluster registers the cluster filter info, replacing the one with the same id.
// It reports false, changing nothing, if a local filter holds the id.
func (fs *Filters) putCluster(info FilterInfo) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if name, ok := fs.ids[info.ID]; ok {
		m := fs.metas[name]
		i := slices.IndexFunc(m.filters, func(fi FilterInfo) bool { return fi.ID == info.ID })
		if m.filters[i].Disposition != DispositionCluster {
			return false
		}
		if name == info.Logger {
			m.filters[i] = info // in place, keeping its turn
			return true
		}
		fs.removeLocked(info.ID)
	}
	fs.insertLocked(info)
	return true
}

// removeCluster drops the filter with the given id if it is a cluster filter, and
// reports whether it did.
func (fs *Filters) removeCluster(id uint64) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	name, ok := fs.ids[id]
	if !ok || !slices.ContainsFunc(fs.metas[name].filters, func(fi FilterInfo) bool {
		return fi.ID == id && fi.Disposition == DispositionCluster
	}) {
		return false
	}
	fs.removeLocked(id)
	return true
}

// List returns every registered filter, ordered by logger name and then by when it
// was added. Like the original's list_filters, it includes expired filters that
// Prune has not dropped yet.
func (fs *Filters) List() []FilterInfo {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	var out []FilterInfo
	for _, name := range fs.namesLocked() {
		out = append(out, fs.metas[name].filters...)
	}
	return out
}

// Loggers returns the metafilter names, sorted; "core" and "default" are always
// among them.
func (fs *Filters) Loggers() []string {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	return fs.namesLocked()
}

// Accept reports whether r should be logged at now, and counts the decision against
// the metafilter that made it.
func (fs *Filters) Accept(r *Record, now time.Time) bool {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	m := fs.selectLocked(r.Backend, now)
	ok := m.accept(r, now)
	if ok {
		m.counts.accepted.Add(1)
	} else {
		m.counts.rejected.Add(1)
	}
	return ok
}

// Select returns the name of the metafilter that judges records from backend at
// now.
func (fs *Filters) Select(backend string, now time.Time) string {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	return fs.selectLocked(backend, now).name
}

// Prune drops filters that expired before now, then metafilters left with no
// filters (except default and core), and returns how many filters it dropped. The
// service calls it periodically (the original does every second).
func (fs *Filters) Prune(now time.Time) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	dropped := 0
	for name, m := range fs.metas {
		m.filters = slices.DeleteFunc(m.filters, func(fi FilterInfo) bool {
			if fi.expired(now) {
				delete(fs.ids, fi.ID)
				dropped++
				return true
			}
			return false
		})
		if len(m.filters) == 0 && name != DefaultLogger && name != CoreLogger {
			delete(fs.metas, name)
		}
	}
	return dropped
}

// Counters returns the accepted and rejected totals for every metafilter name that
// has existed, keyed by name (the original's logging.<name>.{accepted,rejected}).
func (fs *Filters) Counters() map[string]Counter {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	out := make(map[string]Counter, len(fs.counts))
	for name, c := range fs.counts {
		out[name] = Counter{Accepted: c.accepted.Load(), Rejected: c.rejected.Load()}
	}
	return out
}

// selectLocked finds the longest metafilter name that prefixes backend, falling back
// to the default metafilter when there is none or it has no live filters. A linear
// scan is enough: there are as many metafilters as operators set filters for, and it
// costs O(names × shortest length) however long a hostile backend name is.
// fs.mu must be held.
func (fs *Filters) selectLocked(backend string, now time.Time) *metafilter {
	var best *metafilter
	bestLen := -1
	for name, m := range fs.metas {
		if len(name) > bestLen && strings.HasPrefix(backend, name) {
			best, bestLen = m, len(name)
		}
	}
	if best == nil || !best.live(now) {
		return fs.metas[DefaultLogger]
	}
	return best
}

// metafilterLocked returns the metafilter for name, creating it (and its counters)
// if needed. fs.mu must be held for writing.
func (fs *Filters) metafilterLocked(name string) *metafilter {
	if m, ok := fs.metas[name]; ok {
		return m
	}
	c, ok := fs.counts[name]
	if !ok {
		c = new(counter)
		fs.counts[name] = c
	}
	m := &metafilter{name: name, counts: c}
	fs.metas[name] = m
	return m
}

// removeLocked drops the filter with the given id. fs.mu must be held for writing.
func (fs *Filters) removeLocked(id uint64) (FilterInfo, bool) {
	name, ok := fs.ids[id]
	if !ok {
		return FilterInfo{}, false
	}
	delete(fs.ids, id)
	m := fs.metas[name]
	i := slices.IndexFunc(m.filters, func(fi FilterInfo) bool { return fi.ID == id })
	info := m.filters[i]
	m.filters = slices.Delete(m.filters, i, i+1)
	return info, true
}

// insertLocked adds info, whose id must be free. fs.mu must be held for writing.
func (fs *Filters) insertLocked(info FilterInfo) {
	m := fs.metafilterLocked(info.Logger)
	m.filters = append(m.filters, info)
	fs.ids[info.ID] = info.Logger
}

// newIDLocked draws a random non-zero id no registered filter has. Ids are random,
// not sequential, because cluster filters from every node share one unicorn folder
// keyed by id. fs.mu must be held.
func (fs *Filters) newIDLocked() uint64 {
	for {
		id := rand.Uint64()
		if _, taken := fs.ids[id]; id != 0 && !taken {
			return id
		}
	}
}

// namesLocked returns the metafilter names, sorted. fs.mu must be held.
func (fs *Filters) namesLocked() []string {
	names := make([]string, 0, len(fs.metas))
	for name := range fs.metas {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
