package logging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// DefaultUnicornPath is the folder cluster filters are stored in, as in the original.
const DefaultUnicornPath = "/cocaine/logging_v2/filters"

// FilterStore is where cluster filters live: a folder that every host of the cluster
// shares, holding one node per filter, named by the filter id in decimal, whose value
// is the msgpack object {filter, deadline, id, logger_name, disposition: 1}. The daemon
// backs it with unicorn. Implementations must be safe for concurrent use.
//
// Errors reach set_cluster_filter's and remove_filter's callers wrapped with what the
// service was doing; an *rpc.Error in the chain keeps its category and code on the wire
// (unicorn's connection_loss when there is no leader, for instance).
type FilterStore interface {
	// Create stores value at path, creating missing parents. It fails if path exists.
	// It blocks until the store has the node or ctx is done.
	Create(ctx context.Context, path string, value []byte) error
	// Remove deletes path, whatever its version, and reports whether it existed.
	Remove(ctx context.Context, path string) (bool, error)
	// Watch reports the direct children of folder to apply, on the calling goroutine:
	// first one FilterSync event with the folder's whole content (nothing when the
	// folder does not exist), then a FilterPut or FilterDelete event per later change,
	// in order. The first few changes may repeat what the sync reported already;
	// applied in order they leave the right state. Watch blocks until ctx is done
	// (then it returns nil) or the watch breaks (then it returns why, possibly before
	// any event).
	Watch(ctx context.Context, folder string, apply func(FilterEvent)) error
}

// FilterEventKind says what a FilterEvent reports.
type FilterEventKind uint8

// Kinds of FilterEvent.
const (
	// FilterSync: Nodes is the folder's whole content; any node not among them is gone.
	FilterSync FilterEventKind = iota + 1
	// FilterPut: the node at Path was created, or its value changed, to Value.
	FilterPut
	// FilterDelete: the node at Path was removed.
	FilterDelete
)

// FilterEvent is one step of a FilterStore's Watch.
type FilterEvent struct {
	Kind  FilterEventKind
	Path  string       // FilterPut, FilterDelete: the node
	Value []byte       // FilterPut: its msgpack value
	Nodes []FilterNode // FilterSync: every node of the folder
}

// FilterNode is one node of the filter folder.
type FilterNode struct {
	Path  string // <folder>/<id>
	Value []byte // one msgpack object
}

// Option configures a Service beyond its Config.
type Option func(*Service)

// WithFilterStore shares cluster filters through store. Without it set_cluster_filter
// fails with ErrNoCluster and remove_filter sees local filters only.
func WithFilterStore(store FilterStore) Option {
	return func(s *Service) { s.store = store }
}

// Timing of the cluster filter loops.
const (
	watchRetryMin = 100 * time.Millisecond // first back-off after a broken watch
	watchRetryMax = 5 * time.Second        // back-off cap while the store stays away
	sweepInterval = time.Second            // how often expired nodes are looked for
)

// cluster keeps the Filters in step with the FilterStore's folder: a watch loop
// applies every node as a cluster filter (resyncing the whole folder whenever the watch
// is re-established), and a sweep loop deletes the nodes that have expired or do not
// parse. Every host runs both; when several delete the same node, the losers find it
// gone, which is fine. Neither loop is on the path of a record: Filters.Accept never
// waits for the store.
type cluster struct {
	store   FilterStore
	folder  string
	filters *Filters
	now     func() time.Time
	log     *slog.Logger

	retryMin, retryMax, sweepEvery time.Duration

	kick chan struct{} // one token: "nodes wait to be deleted", so the sweep need not wait a tick

	// mu guards nodes: every node the watch has reported, by path, with what the sweep
	// needs. The watch loop writes it, the sweep and the handlers read and trim it.
	mu    sync.Mutex
	nodes map[string]storedNode

	sweepFailing bool // only the sweep loop touches it: log the first failure of a streak
}

// storedNode is what the sweep knows of a node of the folder.
type storedNode struct {
	id       uint64    // 0 when the name is not an id
	deadline time.Time // zero: never (or bad)
	bad      bool      // the node does not parse: delete it
}

// doomed reports whether the sweep should delete the node at now.
func (n storedNode) doomed(now time.Time) bool {
	return n.bad || (!n.deadline.IsZero() && now.After(n.deadline))
}

func newCluster(store FilterStore, folder string, filters *Filters, now func() time.Time, log *slog.Logger) *cluster {
	return &cluster{
		store: store, folder: folder, filters: filters, now: now, log: log.With("folder", folder),
		retryMin: watchRetryMin, retryMax: watchRetryMax, sweepEvery: sweepInterval,
		kick:  make(chan struct{}, 1), // one token: a pending kick is enough, more add nothing
		nodes: make(map[string]storedNode),
	}
}

// path is where the filter id is stored.
func (c *cluster) path(id uint64) string { return c.folder + "/" + strconv.FormatUint(id, 10) }

// set stores a new cluster filter and applies it here at once; the watch applies it on
// every other host (and again here, which changes nothing). It returns the id.
func (c *cluster) set(ctx context.Context, logger string, f Filter, ttlSeconds uint64) (uint64, error) {
	info := FilterInfo{Logger: logger, Filter: f, Disposition: DispositionCluster,
		Deadline: time.Unix(clusterDeadline(c.now(), ttlSeconds), 0)}
	for info.ID == 0 {
		if id := rand.Uint64(); !c.filters.has(id) {
			info.ID = id
		}
	}
	value, err := encodeStored(info)
	if err != nil {
		return 0, fmt.Errorf("logging: set_cluster_filter: encode: %w", err)
	}
	path := c.path(info.ID)
	if err := c.store.Create(ctx, path, value); err != nil {
		return 0, fmt.Errorf("logging: set_cluster_filter: storing the filter at %s failed: %w", path, err)
	}
	c.filters.putCluster(info)
	c.track(path, storedNode{id: info.ID, deadline: info.Deadline})
	return info.ID, nil
}

// remove deletes the node of id from the store, then the local copy. It reports whether
// either existed. A store failure changes nothing here, so the filter stays in step
// with the store.
func (c *cluster) remove(ctx context.Context, id uint64) (bool, error) {
	path := c.path(id)
	stored, err := c.store.Remove(ctx, path)
	if err != nil {
		return false, fmt.Errorf("logging: remove_filter: deleting %s failed: %w", path, err)
	}
	c.mu.Lock()
	delete(c.nodes, path)
	c.mu.Unlock()
	local := c.filters.removeCluster(id)
	return stored || local, nil
}

// track records what the sweep must know of a node.
func (c *cluster) track(path string, n storedNode) {
	c.mu.Lock()
	c.nodes[path] = n
	c.mu.Unlock()
}

// watchLoop runs the store's watch until ctx is done, re-establishing it with back-off
// (retryMin doubling up to retryMax, from retryMin again once a watch has synced).
func (c *cluster) watchLoop(ctx context.Context) {
	wait := c.retryMin
	retry := time.NewTimer(wait)
	retry.Stop() // armed by Reset after a failure
	defer retry.Stop()
	failing := false
	for {
		synced := false
		err := c.store.Watch(ctx, c.folder, func(ev FilterEvent) {
			if ev.Kind == FilterSync {
				synced = true
				if failing {
					c.log.Info("cluster filters resynced")
					failing = false
				}
			}
			c.apply(ev)
		})
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("the watch ended")
		}
		if synced {
			wait = c.retryMin
		}
		if !failing {
			c.log.Warn("cluster filter watch failed; retrying", "err", err, "retry_in", wait)
		} else {
			c.log.Debug("cluster filter watch failed again", "err", err, "retry_in", wait)
		}
		failing = true
		retry.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-retry.C:
		}
		wait = min(2*wait, c.retryMax)
	}
}

// apply brings the Filters in step with one watch event.
func (c *cluster) apply(ev FilterEvent) {
	now := c.now()
	doomed := false
	switch ev.Kind {
	case FilterSync:
		nodes := make(map[string]storedNode, len(ev.Nodes))
		var infos []FilterInfo
		for _, n := range ev.Nodes {
			info, sn, ok := c.parse(n.Path, n.Value, now)
			if !ok {
				continue
			}
			nodes[n.Path] = sn
			if sn.doomed(now) {
				doomed = true
			} else {
				infos = append(infos, info)
			}
		}
		c.filters.syncCluster(infos)
		c.mu.Lock()
		c.nodes = nodes
		c.mu.Unlock()
	case FilterPut:
		info, sn, ok := c.parse(ev.Path, ev.Value, now)
		if !ok {
			return
		}
		c.track(ev.Path, sn)
		if doomed = sn.doomed(now); doomed {
			c.filters.removeCluster(sn.id)
		} else {
			c.filters.putCluster(info)
		}
	case FilterDelete:
		c.mu.Lock()
		delete(c.nodes, ev.Path)
		c.mu.Unlock()
		if id, ok := c.idOf(ev.Path); ok {
			c.filters.removeCluster(id)
		}
	}
	if doomed {
		select {
		case c.kick <- struct{}{}: // the sweep looks now rather than at its next tick
		default:
		}
	}
}

// parse reads one node of the folder. ok is false for paths that are not children of
// the folder (nothing to do with them); a child whose name or value is not a cluster
// filter comes back bad, for the sweep to delete.
func (c *cluster) parse(path string, value []byte, now time.Time) (FilterInfo, storedNode, bool) {
	name, ok := strings.CutPrefix(path, c.folder+"/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return FilterInfo{}, storedNode{}, false
	}
	id, idOK := c.idOf(path)
	info, err := decodeStored(value)
	if err == nil && (!idOK || info.ID != id) {
		err = fmt.Errorf("the node's name is not its id %d", info.ID)
	}
	if err != nil {
		c.log.Warn("deleting an unparsable cluster filter", "path", path, "err", err)
		return FilterInfo{}, storedNode{id: id, bad: true}, true
	}
	return info, storedNode{id: id, deadline: info.Deadline}, true
}

// idOf returns the id a child of the folder is named by: its canonical decimal form.
func (c *cluster) idOf(path string) (uint64, bool) {
	name, ok := strings.CutPrefix(path, c.folder+"/")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseUint(name, 10, 64)
	if err != nil || id == 0 || strconv.FormatUint(id, 10) != name {
		return 0, false
	}
	return id, true
}

// sweepLoop deletes expired and bad nodes every sweepEvery, and when the watch finds
// some, until ctx is done.
func (c *cluster) sweepLoop(ctx context.Context) {
	t := time.NewTicker(c.sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
		}
		c.sweep(ctx)
	}
}

// sweep deletes every node that has expired or is bad, and drops the local copies of
// the expired ones (Prune would, a little later). A bad node that cannot be deleted (one
// with children, say) is forgotten until the next resync, so it is not retried every
// second; a failure on an expired one ends the sweep, as the store is away, and the next
// sweep tries again.
func (c *cluster) sweep(ctx context.Context) {
	now := c.now()
	victims := map[string]storedNode{}
	c.mu.Lock()
	for path, n := range c.nodes {
		if n.doomed(now) {
			victims[path] = n
		}
	}
	c.mu.Unlock()
	for path, n := range victims {
		_, err := c.store.Remove(ctx, path)
		if err != nil && ctx.Err() != nil {
			return
		}
		if err != nil && !c.sweepFailing {
			c.log.Warn("deleting a cluster filter node failed", "err", err, "path", path)
		}
		c.sweepFailing = err != nil
		if err != nil && !n.bad {
			return
		}
		c.mu.Lock()
		if c.nodes[path] == n { // not replaced meanwhile
			delete(c.nodes, path)
		}
		c.mu.Unlock()
		if !n.bad {
			c.filters.removeCluster(n.id)
		}
	}
}

// maxDeadline caps the deadlines of cluster filters where time.Time still counts right
// (9999-12-31T23:59:59Z): time.Unix overflows well below math.MaxInt64.
const maxDeadline = 253402300799

// clusterDeadline is now + ttl in Unix seconds, capped at maxDeadline.
func clusterDeadline(now time.Time, ttlSeconds uint64) int64 {
	base := min(max(now.Unix(), 0), maxDeadline)
	if ttlSeconds > uint64(maxDeadline-base) {
		return maxDeadline
	}
	return base + int64(ttlSeconds)
}

// encodeStored is the value of a cluster filter's node: the original's
// {filter, deadline, id, logger_name, disposition}.
func encodeStored(info FilterInfo) ([]byte, error) {
	return rpc.Marshal(map[string]any{
		"filter":      info.Filter.Repr(),
		"deadline":    info.DeadlineUnix(),
		"id":          info.ID,
		"logger_name": info.Logger,
		"disposition": uint64(DispositionCluster),
	})
}

// decodeStored reads a node's value back. Every field must be there, with its type;
// the disposition must be cluster.
func decodeStored(value []byte) (FilterInfo, error) {
	v, err := rpc.Unmarshal(value)
	if err != nil {
		return FilterInfo{}, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return FilterInfo{}, fmt.Errorf("the value is a %s, not a map", typeName(v))
	}
	var info FilterInfo
	var errs []error
	if repr, ok := m["filter"]; !ok {
		errs = append(errs, errors.New("no filter"))
	} else if info.Filter, err = ParseFilter(repr); err != nil {
		errs = append(errs, err)
	}
	deadline, err := storedUint(m, "deadline")
	errs = append(errs, err)
	if info.ID, err = storedUint(m, "id"); err == nil && info.ID == 0 {
		err = errors.New("id 0")
	}
	errs = append(errs, err)
	if d, err := storedUint(m, "disposition"); err != nil {
		errs = append(errs, err)
	} else if d != DispositionCluster {
		errs = append(errs, fmt.Errorf("disposition %d, not %d (cluster)", d, DispositionCluster))
	}
	if name, present := m["logger_name"]; !present {
		errs = append(errs, errors.New("no logger_name"))
	} else if info.Logger, ok = name.(string); !ok {
		errs = append(errs, fmt.Errorf("logger_name is a %s, not a string", typeName(name)))
	}
	if err := errors.Join(errs...); err != nil {
		return FilterInfo{}, err
	}
	info.Disposition = DispositionCluster
	if deadline < math.MaxInt64 { // MaxInt64 and above: never, as DeadlineUnix writes it
		info.Deadline = time.Unix(int64(min(deadline, maxDeadline)), 0)
	}
	return info, nil
}

// storedUint reads a non-negative integer field.
func storedUint(m map[string]any, key string) (uint64, error) {
	switch x := m[key].(type) {
	case uint64:
		return x, nil
	case int64:
		if x >= 0 {
			return uint64(x), nil
		}
		return 0, fmt.Errorf("%s is negative", key)
	case nil:
		if _, ok := m[key]; !ok {
			return 0, fmt.Errorf("no %s", key)
		}
	}
	return 0, fmt.Errorf("%s is a %s, not an unsigned integer", key, typeName(m[key]))
}
