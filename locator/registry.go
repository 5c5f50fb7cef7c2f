package locator

import (
	"fmt"
	"sort"
	"sync"

	"github.com/cocaine/cocaine/rpc"
)

// Entry is a service as the locator publishes it.
type Entry struct {
	Name      string
	Endpoints []rpc.Endpoint
	Version   uint64
	Graph     *rpc.Graph // nil for a non-native service published without a graph
	// Restricted services are resolvable here but never announced to other hosts.
	Restricted bool
	// Weight is the service's capacity as announced to other hosts (the requests an app
	// takes at once); resolve spreads clients over hosts in proportion. 0 counts as 1.
	Weight uint32

	resolved rpc.Raw // [endpoints, version, graph], encoded once: resolve answers with it
	graphRaw rpc.Raw // the graph alone, encoded (nil for a non-native service)
}

// info encodes [endpoints, version, graph]; endpoints empty for a withdrawn service.
// graphRaw must be set.
func (e *Entry) info(withdrawn bool) rpc.Raw {
	eps := e.Endpoints
	if withdrawn {
		eps = nil
	}
	return appendResolved(eps, nil, e.Version, e.graphRaw)
}

// Update is a change of the registry: an entry exposed, or withdrawn (Removed).
type Update struct {
	Entry   *Entry
	Removed bool
}

// Registry is this host's table of local services. It is safe for concurrent use.
// Watchers get every change after the snapshot they start from, in order; a watcher that
// falls behind by more than its buffer is dropped (its channel is closed with Overflow
// set) rather than slowing down whoever changes the registry.
type Registry struct {
	mu       sync.Mutex
	entries  map[string]*Entry
	watchers map[*Watcher]struct{}
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{entries: map[string]*Entry{}, watchers: map[*Watcher]struct{}{}}
}

// Expose adds a service. It fails with ErrDuplicate if the name is taken. The returned
// function withdraws it; calling it more than once is harmless.
func (r *Registry) Expose(e Entry) (withdraw func(), err error) {
	if e.Name == "" {
		return nil, fmt.Errorf("%w: a service needs a name", ErrInvalidGroup)
	}
	ent := &e
	if ent.Graph != nil {
		ent.graphRaw, _ = ent.Graph.AppendMsgpack(nil)
	}
	ent.resolved = ent.info(false)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.entries[e.Name]; ok {
		return nil, fmt.Errorf("%w: %q", ErrDuplicate, e.Name)
	}
	r.entries[e.Name] = ent
	r.notifyLocked(Update{Entry: ent})
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.entries[e.Name] == ent {
				delete(r.entries, e.Name)
				r.notifyLocked(Update{Entry: ent, Removed: true})
			}
		})
	}, nil
}

// Lookup returns the entry of a service.
func (r *Registry) Lookup(name string) (*Entry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[name]
	return e, ok
}

// Entries returns every entry, sorted by name.
func (r *Registry) Entries() []*Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.entriesLocked()
}

func (r *Registry) entriesLocked() []*Entry {
	out := make([]*Entry, 0, len(r.entries))
	for _, e := range r.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Watcher receives registry changes.
type Watcher struct {
	// C delivers updates in order. It is closed by Stop or on overflow.
	C        <-chan Update
	c        chan Update
	r        *Registry
	overflow bool
}

// Watch returns the current entries and a watcher for every later change. buffer bounds
// how far the watcher may fall behind.
func (r *Registry) Watch(buffer int) ([]*Entry, *Watcher) {
	// buffer: the caller's bound on undelivered updates before the watcher is dropped
	c := make(chan Update, buffer)
	w := &Watcher{C: c, c: c, r: r}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.watchers[w] = struct{}{}
	return r.entriesLocked(), w
}

// Stop ends the watch and closes C. Safe to call more than once.
func (w *Watcher) Stop() {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	if _, ok := w.r.watchers[w]; ok {
		delete(w.r.watchers, w)
		close(w.c)
	}
}

// Overflowed reports whether the watcher was dropped for falling behind. Read it after C
// is closed.
func (w *Watcher) Overflowed() bool {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.overflow
}

func (r *Registry) notifyLocked(u Update) {
	for w := range r.watchers {
		select {
		case w.c <- u:
		default:
			w.overflow = true
			delete(r.watchers, w)
			close(w.c)
		}
	}
}
