package locator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// ClusterStore is where hosts announce their services to each other: unicorn, through
// an adapter in the daemon. Every method is safe for concurrent use.
type ClusterStore interface {
	// HostLease returns this host's lease and a channel closed when it is lost (the host
	// was cut off too long); a new lease is then available.
	HostLease(ctx context.Context) (lease int64, lost <-chan struct{}, err error)
	// Publish creates path holding value, bound to lease so that it vanishes with the
	// host, replacing whatever path held.
	Publish(ctx context.Context, path string, value []byte, lease int64) error
	// Unpublish removes path; a missing path is not an error.
	Unpublish(ctx context.Context, path string) error
	// Watch reports everything under prefix (an event with Sync set), then every change,
	// calling apply on the caller's goroutine, in order. It returns nil when ctx ends,
	// else why the watch broke (the caller watches again).
	Watch(ctx context.Context, prefix string, apply func(ClusterEvent)) error
}

// ClusterEvent is a change under the watched prefix.
type ClusterEvent struct {
	Sync    bool          // Nodes is the whole content under the prefix
	Nodes   []ClusterNode // with Sync
	Path    string        // without Sync: the node that changed
	Value   []byte        // its value, unless Deleted
	Deleted bool
}

// ClusterNode is one node under the prefix.
type ClusterNode struct {
	Path  string
	Value []byte
}

// The layout under Config.Prefix (default /cocaine/locator):
//
//	hosts/<uuid>                 {"locator": [[ip, port]...]}          one per host
//	services/<name>/<uuid>       {"endpoints", "version", "graph", "weight"}
//
// Both are ephemeral, bound to the host's lease: a dead host's entries vanish when its
// lease expires. Service names are path-escaped.
const (
	hostsDir    = "hosts"
	servicesDir = "services"
)

// DefaultPrefix is where hosts announce themselves in unicorn.
const DefaultPrefix = "/cocaine/locator"

// remote is a service as another host announced it.
type remote struct {
	host      string
	endpoints []rpc.Endpoint
	version   uint64
	graph     rpc.Raw // nil: non-native
	weight    uint32
}

// encodeAnnounce is the value of services/<name>/<uuid>.
func encodeAnnounce(e *Entry, eps []rpc.Endpoint) []byte {
	b := rpc.AppendMapHeader(nil, 4)
	b = rpc.AppendString(b, "endpoints")
	b, _ = rpc.Endpoints(eps).AppendMsgpack(b)
	b = rpc.AppendString(b, "version")
	b = rpc.AppendUint(b, e.Version)
	// The graph travels as bytes: unicorn values are dynamic values, whose maps have
	// string keys, and a graph's keys are method ids.
	b = rpc.AppendString(b, "graph")
	if e.Graph == nil {
		b = rpc.AppendString(b, "")
	} else {
		b = rpc.AppendString(b, string(e.graphRaw))
	}
	b = rpc.AppendString(b, "weight")
	return rpc.AppendUint(b, uint64(max(e.Weight, 1)))
}

var errAnnounce = errors.New("locator: malformed announce")

// maxAnnounceEndpoints bounds the endpoints one announce may list.
const maxAnnounceEndpoints = 64

// decodeAnnounce parses the value of services/<name>/<uuid>. Unknown keys are skipped,
// so a newer host may announce more.
func decodeAnnounce(host string, b []byte) (*remote, error) {
	d := rpc.NewDecoder(b)
	n, err := d.MapLen()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errAnnounce, err)
	}
	r := &remote{host: host, weight: 1}
	for range n {
		key, err := d.String()
		if err != nil {
			return nil, fmt.Errorf("%w: key: %v", errAnnounce, err)
		}
		switch key {
		case "endpoints":
			var eps rpc.Endpoints
			if err := eps.DecodeMsgpack(d); err != nil {
				return nil, fmt.Errorf("%w: endpoints: %v", errAnnounce, err)
			}
			if len(eps) > maxAnnounceEndpoints {
				return nil, fmt.Errorf("%w: %d endpoints", errAnnounce, len(eps))
			}
			r.endpoints = eps
		case "version":
			if r.version, err = d.Uint(); err != nil {
				return nil, fmt.Errorf("%w: version: %v", errAnnounce, err)
			}
		case "graph":
			raw, err := d.Bytes()
			if err != nil {
				return nil, fmt.Errorf("%w: graph: %v", errAnnounce, err)
			}
			if len(raw) == 0 {
				break // non-native
			}
			gd := rpc.NewDecoder(raw)
			if _, err := rpc.DecodeGraph(gd, r.version); err != nil || gd.Remaining() != 0 {
				return nil, fmt.Errorf("%w: graph: %v", errAnnounce, err)
			}
			r.graph = append(rpc.Raw(nil), raw...)
		case "weight":
			w, err := d.Uint()
			if err != nil {
				return nil, fmt.Errorf("%w: weight: %v", errAnnounce, err)
			}
			r.weight = uint32(min(max(w, 1), 1<<20))
		default:
			if err := d.Skip(); err != nil {
				return nil, fmt.Errorf("%w: %v", errAnnounce, err)
			}
		}
	}
	if d.Remaining() != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", errAnnounce)
	}
	if len(r.endpoints) == 0 {
		return nil, fmt.Errorf("%w: no endpoints", errAnnounce)
	}
	return r, nil
}

// encodeHost is the value of hosts/<uuid>.
func encodeHost(locator []rpc.Endpoint) []byte {
	b := rpc.AppendMapHeader(nil, 1)
	b = rpc.AppendString(b, "locator")
	b, _ = rpc.Endpoints(locator).AppendMsgpack(b)
	return b
}

func decodeHost(b []byte) ([]rpc.Endpoint, error) {
	d := rpc.NewDecoder(b)
	n, err := d.MapLen()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errAnnounce, err)
	}
	var eps rpc.Endpoints
	for range n {
		key, err := d.String()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errAnnounce, err)
		}
		if key == "locator" {
			if err := eps.DecodeMsgpack(d); err != nil {
				return nil, fmt.Errorf("%w: locator: %v", errAnnounce, err)
			}
			continue
		}
		if err := d.Skip(); err != nil {
			return nil, fmt.Errorf("%w: %v", errAnnounce, err)
		}
	}
	return eps, nil
}

// index is the cluster's services as the other hosts announced them, kept from a watch
// of the store. It is safe for concurrent use.
type index struct {
	self   string
	prefix string

	mu       sync.RWMutex
	services map[string]map[string]*remote // name → host → announce
	hosts    map[string][]rpc.Endpoint     // host → its locator
	changed  chan struct{}                 // closed (and replaced) at every change
}

func newIndex(self, prefix string) *index {
	return &index{self: self, prefix: strings.TrimSuffix(prefix, "/"), services: map[string]map[string]*remote{},
		hosts: map[string][]rpc.Endpoint{}, changed: make(chan struct{})}
}

// parse splits a path under the prefix into (kind, name, host).
func (x *index) parse(path string) (kind, name, host string, ok bool) {
	rest, found := strings.CutPrefix(path, x.prefix+"/")
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) == 2 && parts[0] == hostsDir:
		return hostsDir, "", parts[1], true
	case len(parts) == 3 && parts[0] == servicesDir:
		name, err := url.PathUnescape(parts[1])
		if err != nil {
			return "", "", "", false
		}
		return servicesDir, name, parts[2], true
	}
	return "", "", "", false
}

// apply folds one event into the index; it reports announces it could not parse.
func (x *index) apply(ev ClusterEvent, bad func(path string, err error)) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if ev.Sync {
		x.services = map[string]map[string]*remote{}
		x.hosts = map[string][]rpc.Endpoint{}
		for _, nd := range ev.Nodes {
			x.setLocked(nd.Path, nd.Value, false, bad)
		}
	} else {
		x.setLocked(ev.Path, ev.Value, ev.Deleted, bad)
	}
	close(x.changed)
	x.changed = make(chan struct{})
}

func (x *index) setLocked(path string, value []byte, deleted bool, bad func(string, error)) {
	kind, name, host, ok := x.parse(path)
	if !ok || host == x.self {
		return // not ours to index (parents, our own announces)
	}
	switch kind {
	case hostsDir:
		if deleted {
			delete(x.hosts, host)
			return
		}
		eps, err := decodeHost(value)
		if err != nil {
			bad(path, err)
			return
		}
		x.hosts[host] = eps
	case servicesDir:
		if deleted {
			if m := x.services[name]; m != nil {
				delete(m, host)
				if len(m) == 0 {
					delete(x.services, name)
				}
			}
			return
		}
		r, err := decodeAnnounce(host, value)
		if err != nil {
			bad(path, err)
			return
		}
		m := x.services[name]
		if m == nil {
			m = map[string]*remote{}
			x.services[name] = m
		}
		m[host] = r
	}
}

// lookup returns the other hosts' announces of name, sorted by host.
func (x *index) lookup(name string) []*remote {
	x.mu.RLock()
	defer x.mu.RUnlock()
	m := x.services[name]
	out := make([]*remote, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *remote) int { return strings.Compare(a.host, b.host) })
	return out
}

// cluster returns every other host's locator endpoint.
func (x *index) cluster() map[string][]rpc.Endpoint {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return maps.Clone(x.hosts)
}

// watchChan is closed at the next change.
func (x *index) watchChan() <-chan struct{} {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.changed
}

// announceable drops the endpoints other hosts could not use: unspecified addresses,
// and loopback ones unless the whole cluster lives on this machine.
func announceable(eps []rpc.Endpoint, loopback bool) []rpc.Endpoint {
	out := make([]rpc.Endpoint, 0, len(eps))
	for _, e := range eps {
		ip := net.ParseIP(e.Host)
		if ip == nil || ip.IsUnspecified() || (ip.IsLoopback() && !loopback) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// servicePath is where this host announces service name.
func (s *Service) servicePath(name string) string {
	return s.prefix + "/" + servicesDir + "/" + url.PathEscape(name) + "/" + s.cfg.UUID
}

// announcing reports whether e is announced to the other hosts.
func (s *Service) announcing(e *Entry) bool {
	// "." and ".." would not survive as path segments.
	return s.announced(e) && e.Name != "." && e.Name != ".."
}

// announce keeps this host's services in the store under its lease: all of them once a
// lease is held, then every change of the registry; everything again after a lost lease
// or a failed write.
func (s *Service) announce(ctx context.Context) {
	backoff := newBackoff()
	for ctx.Err() == nil {
		err := s.announceOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("announcing this host's services failed; retrying", "err", err)
		if !backoff.wait(ctx) {
			return
		}
	}
}

func (s *Service) announceOnce(ctx context.Context) error {
	lease, lost, err := s.cluster.HostLease(ctx)
	if err != nil {
		return fmt.Errorf("host lease: %w", err)
	}
	entries, w := s.reg.Watch(s.cfg.WatchBuffer)
	defer w.Stop()
	published := map[string]bool{}
	put := func(e *Entry) error {
		if !s.announcing(e) {
			return nil
		}
		eps := announceable(e.Endpoints, s.cfg.AnnounceLoopback)
		if len(eps) == 0 {
			return nil
		}
		if err := s.cluster.Publish(ctx, s.servicePath(e.Name), encodeAnnounce(e, eps), lease); err != nil {
			return fmt.Errorf("announce %s: %w", e.Name, err)
		}
		published[e.Name] = true
		return nil
	}
	hostEps := announceable(s.self(), s.cfg.AnnounceLoopback)
	if err := s.cluster.Publish(ctx, s.prefix+"/"+hostsDir+"/"+s.cfg.UUID, encodeHost(hostEps), lease); err != nil {
		return fmt.Errorf("announce this host: %w", err)
	}
	for _, e := range entries {
		if err := put(e); err != nil {
			return err
		}
	}
	s.log.Info("announced this host's services", "services", len(published), "lease", lease)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-lost:
			return errors.New("host lease lost")
		case u, ok := <-w.C:
			if !ok {
				return errors.New("registry watch overflowed")
			}
			if !u.Removed {
				if err := put(u.Entry); err != nil {
					return err
				}
				continue
			}
			if !published[u.Entry.Name] {
				continue
			}
			// A newer entry of the same name may be exposed already: only remove the
			// announce if the name is really gone.
			if _, ok := s.reg.Lookup(u.Entry.Name); ok {
				continue
			}
			if err := s.cluster.Unpublish(ctx, s.servicePath(u.Entry.Name)); err != nil {
				return fmt.Errorf("withdraw %s: %w", u.Entry.Name, err)
			}
			delete(published, u.Entry.Name)
		}
	}
}

// follow keeps the index current from a watch of the store, watching again (from a
// fresh sync) whenever the watch breaks.
func (s *Service) follow(ctx context.Context) {
	backoff := newBackoff()
	for ctx.Err() == nil {
		err := s.cluster.Watch(ctx, s.prefix, func(ev ClusterEvent) {
			if ev.Sync {
				backoff.reset()
			}
			s.index.apply(ev, func(path string, err error) {
				s.log.Warn("ignoring a malformed announce", "path", path, "err", err)
			})
		})
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("the cluster watch broke; watching again", "err", err)
		if !backoff.wait(ctx) {
			return
		}
	}
}

// backoff is a doubling wait between retries, from 100ms to 5s.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{d: 100 * time.Millisecond} }

func (b *backoff) reset() { b.d = 100 * time.Millisecond }

// wait waits the current delay and doubles it; false if ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.d)
	defer t.Stop()
	b.d = min(2*b.d, 5*time.Second)
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
