package locator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cocaine/cocaine/internal/lifecycle"
	"github.com/cocaine/cocaine/rpc"
)

// Name is the locator's service name; it is always restricted (never announced).
const Name = "locator"

// Storage layout of routing groups, as the original and cocaine-tool use it.
const (
	GroupsCollection = "groups"
)

// GroupTags are the tags a stored group must carry to be loaded.
var GroupTags = []string{"group", "active"}

// GroupStore reads routing groups. The storage backend satisfies it.
type GroupStore interface {
	Read(ctx context.Context, collection, key string) ([]byte, error)
	Find(ctx context.Context, collection string, tags []string) ([]string, error)
}

// Config configures the locator service.
type Config struct {
	// UUID identifies this host; required.
	UUID string
	// Restrict lists services that are never announced to other hosts.
	Restrict []string
	// Extra is sent with every connect update as the x-cocaine-locator-extra header; its
	// key "x-cocaine-cluster" partitions clusters.
	Extra map[string]any
	// WatchBuffer bounds how many registry updates a connect stream may fall behind
	// before it is closed with an error (the peer reconnects). 1024 if zero.
	WatchBuffer int

	// The cluster (with WithCluster): this host announces its services in the store
	// under Prefix (DefaultPrefix if empty) and resolves those of the others from it.
	Prefix string
	// AnnounceLoopback lets loopback endpoints be announced: for clusters whose hosts
	// all live on this machine. Other hosts never see unspecified addresses.
	AnnounceLoopback bool
	// Proxy makes resolve answer, for a service that runs only on other hosts, with an
	// endpoint of this host that forwards each connection there (for clients that
	// cannot reach the other hosts). ProxyHost is the address it listens on.
	Proxy     bool
	ProxyHost string
	// GroupRefresh is how often routing groups are reloaded from storage, so that a
	// group changed through any host reaches every routing stream (5s if zero).
	GroupRefresh time.Duration
}

// Validate reports every problem of cfg.
func (c Config) Validate() error {
	var errs []error
	if c.UUID == "" {
		errs = append(errs, errors.New("locator: uuid is required"))
	}
	if c.WatchBuffer < 0 {
		errs = append(errs, fmt.Errorf("locator: watch_buffer must not be negative, got %d", c.WatchBuffer))
	}
	if c.Prefix != "" && (!strings.HasPrefix(c.Prefix, "/") || strings.HasSuffix(c.Prefix, "/")) {
		errs = append(errs, fmt.Errorf("locator: prefix %q must start with '/' and not end with one", c.Prefix))
	}
	if c.Proxy && net.ParseIP(c.ProxyHost) == nil {
		errs = append(errs, fmt.Errorf("locator: proxy mode needs the IP address to listen on, got %q", c.ProxyHost))
	}
	if c.GroupRefresh < 0 {
		errs = append(errs, fmt.Errorf("locator: group_refresh must not be negative, got %s", c.GroupRefresh))
	}
	return errors.Join(errs...)
}

// Service is the locator: resolve, connect, refresh, cluster, publish, routing and uuid
// (protocol.md §6.1) over this host's Registry and the routing groups in storage.
type Service struct {
	cfg     Config
	reg     *Registry
	groups  GroupStore   // nil: no routing groups
	cluster ClusterStore // nil: a single host
	self    func() []rpc.Endpoint
	index   *index // the other hosts' services (with a cluster)
	prefix  string
	log     *slog.Logger
	d       *rpc.Dispatcher
	extra   []rpc.Header
	work    *lifecycle.Group
	proxies *proxies // with Config.Proxy

	mu       sync.Mutex
	rings    map[string]*Ring
	routers  map[string]*rpc.Tx
	connects map[string]*connectStream // by the remote node's uuid: a new connect replaces the old
}

// connectStream is one connect channel; closing replaced ends it in favour of a newer one.
type connectStream struct {
	tx       *rpc.Tx
	replaced chan struct{}
}

// Option configures a Service beyond its Config.
type Option func(*Service)

// WithCluster makes the locator cluster-wide: this host's services are announced in
// store, the other hosts' are resolved from it. self gives this host's locator
// endpoints (announced for cluster()), once it listens.
func WithCluster(store ClusterStore, self func() []rpc.Endpoint) Option {
	return func(s *Service) { s.cluster, s.self = store, self }
}

// New builds the locator service. groups may be nil (no routing groups).
func New(cfg Config, reg *Registry, groups GroupStore, log *slog.Logger, opts ...Option) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.WatchBuffer == 0 {
		cfg.WatchBuffer = 1024
	}
	if cfg.GroupRefresh == 0 {
		cfg.GroupRefresh = 5 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		cfg: cfg, reg: reg, groups: groups, log: log.With("component", "locator"),
		rings: map[string]*Ring{}, routers: map[string]*rpc.Tx{}, connects: map[string]*connectStream{},
		work: lifecycle.NewGroup(context.Background()),
	}
	for _, o := range opts {
		o(s)
	}
	s.prefix = cfg.Prefix
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	if s.cluster != nil {
		s.index = newIndex(cfg.UUID, s.prefix)
		if cfg.Proxy {
			s.proxies = newProxies(cfg.ProxyHost, s.index, s.log)
		}
	}
	// The original sends the header on every connect write, an empty map included.
	extra := cfg.Extra
	if extra == nil {
		extra = map[string]any{}
	}
	blob, err := rpc.Marshal(extra)
	if err != nil {
		return nil, fmt.Errorf("locator: extra: %w", err)
	}
	s.extra = []rpc.Header{{Name: rpc.HeaderLocatorExtra, Value: blob}}
	d := rpc.NewDispatcher(rpc.LocatorGraph, errorTable, s.log)
	d.MustHandle("resolve", s.resolve)
	d.MustHandle("connect", s.connect)
	d.MustHandle("refresh", s.refresh)
	d.MustHandle("cluster", s.clusterRPC)
	d.MustHandle("publish", s.publish)
	d.MustHandle("routing", s.routing)
	d.MustHandle("uuid", s.uuid)
	s.d = d
	return s, nil
}

// Dispatcher serves the locator's graph.
func (s *Service) Dispatcher() *rpc.Dispatcher { return s.d }

// Run loads the routing groups, then waits for ctx; on return, every stream the locator
// serves has been closed and its goroutines have exited.
func (s *Service) Run(ctx context.Context) error {
	if s.cluster != nil {
		s.work.Go(s.announce)
		s.work.Go(s.follow)
	}
	if s.proxies != nil {
		s.work.Go(s.proxies.run)
	}
	s.work.Go(s.refreshGroups)
	<-ctx.Done()
	s.work.Stop()
	s.mu.Lock()
	for id, tx := range s.routers {
		tx.Close() // as the original: streams are closed on shutdown
		delete(s.routers, id)
	}
	s.mu.Unlock()
	return nil
}

func (s *Service) resolve(ctx context.Context, req *rpc.Request) error {
	var name, seed string
	if err := req.Args.Scan(&name, rpc.Optional(&seed)); err != nil {
		return err
	}
	s.mu.Lock()
	ring := s.rings[name]
	s.mu.Unlock()
	if ring != nil {
		name = ring.Pick(seed)
	}
	raw, err := s.Resolve(name)
	if err != nil {
		return err
	}
	return req.Tx.SendRaw(rpc.Value, raw)
}

func (s *Service) uuid(ctx context.Context, req *rpc.Request) error {
	return req.Tx.Value(s.cfg.UUID)
}

// clusterRPC lists the other hosts of the cluster: {uuid: [ip, port]}, their locators'
// first endpoints (none on a single host).
func (s *Service) clusterRPC(ctx context.Context, req *rpc.Request) error {
	out := map[string]any{}
	if s.index != nil {
		for h, eps := range s.index.cluster() {
			if len(eps) == 0 {
				out[h] = rpc.Endpoint{Host: "0.0.0.0", Port: 0} // as the original shows a link in progress
				continue
			}
			out[h] = eps[0]
		}
	}
	return req.Tx.Value(out)
}

// connect streams this host's announced services: a snapshot, then every change, each
// write as [uuid, {name: [endpoints, version, graph]}] with the extra header.
func (s *Service) connect(ctx context.Context, req *rpc.Request) error {
	var peer string
	if err := req.Args.Scan(&peer); err != nil {
		return err
	}
	snapshot, w := s.reg.Watch(s.cfg.WatchBuffer)
	stream := &connectStream{tx: req.Tx, replaced: make(chan struct{})}
	s.mu.Lock()
	if old := s.connects[peer]; old != nil {
		close(old.replaced) // its goroutine closes the old stream and exits
	}
	s.connects[peer] = stream
	s.mu.Unlock()
	tx := req.Tx
	started := s.work.Go(func(ctx context.Context) {
		defer w.Stop()
		defer func() {
			s.mu.Lock()
			if s.connects[peer] == stream {
				delete(s.connects, peer)
			}
			s.mu.Unlock()
		}()
		if err := s.sendServices(tx, snapshot, false, true); err != nil {
			return
		}
		done := req.Session().Done()
		for {
			select {
			case u, ok := <-w.C:
				if !ok {
					if w.Overflowed() {
						tx.Error(fmt.Errorf("%w: connect stream fell behind the registry; reconnect", ErrRoutingStorage))
					}
					return
				}
				if err := s.sendServices(tx, []*Entry{u.Entry}, u.Removed, false); err != nil {
					return
				}
			case <-done:
				return
			case <-stream.replaced:
				tx.Close()
				return
			case <-ctx.Done():
				tx.Close()
				return
			}
		}
	})
	if !started {
		w.Stop()
		return tx.Close()
	}
	return nil
}

// announced reports whether e is shown to other hosts: not restricted, and not the
// locator itself.
func (s *Service) announced(e *Entry) bool {
	return !e.Restricted && e.Name != Name && !slices.Contains(s.cfg.Restrict, e.Name)
}

func (s *Service) sendServices(tx *rpc.Tx, es []*Entry, removed, snapshot bool) error {
	b := rpc.AppendArrayHeader(nil, 2)
	b = rpc.AppendString(b, s.cfg.UUID)
	var announced []*Entry
	for _, e := range es {
		if s.announced(e) {
			announced = append(announced, e)
		}
	}
	if len(announced) == 0 && !snapshot {
		return nil // nothing announceable changed; a snapshot is sent even when empty
	}
	b = rpc.AppendMapHeader(b, len(announced))
	for _, e := range announced {
		b = rpc.AppendString(b, e.Name)
		if removed {
			b = append(b, e.info(true)...)
		} else {
			b = append(b, e.resolved...)
		}
	}
	return tx.SendHeaders(rpc.Write, b, s.extra)
}

// publish registers an external service for as long as the channel lives: until the
// client sends discard or disconnects.
func (s *Service) publish(ctx context.Context, req *rpc.Request) error {
	var name string
	var eps rpc.Endpoints
	var proto publishedProtocol
	if err := req.Args.Scan(&name, &eps, rpc.Optional(&proto)); err != nil {
		return err
	}
	if proto.graph != nil && len(proto.graph.Methods()) > 0 && proto.version == 0 {
		// Fatal in the original (the publish slot has no error path).
		return rpc.Fatal(fmt.Errorf("%w: %q publishes a graph with version 0", ErrMissingVersion, name))
	}
	e := Entry{Name: name, Endpoints: eps, Version: proto.version}
	if proto.graph != nil && len(proto.graph.Methods()) > 0 {
		e.Graph = proto.graph
	}
	withdraw, err := s.reg.Expose(e)
	if err != nil {
		return err
	}
	req.Receive(discardFunc(withdraw))
	return req.Tx.Value()
}

type publishedProtocol struct {
	version uint64
	graph   *rpc.Graph
}

// DecodeMsgpack reads [version, graph].
func (p *publishedProtocol) DecodeMsgpack(d *rpc.Decoder) error {
	n, err := d.ArrayLen()
	if err != nil {
		return err
	}
	if n < 2 {
		return fmt.Errorf("a protocol is [version, graph], got %d elements", n)
	}
	if p.version, err = d.Uint(); err != nil {
		return err
	}
	if p.graph, err = rpc.DecodeGraph(d, p.version); err != nil {
		return err
	}
	for i := 2; i < n; i++ {
		if err := d.Skip(); err != nil {
			return err
		}
	}
	return nil
}

// discardFunc runs a cleanup when the channel's client side ends, either way.
type discardFunc func()

// Receive handles discard. The control messages that the graph also lists in this state
// have no handler in the original, so they are fatal to the connection (protocol.md §3.6).
func (f discardFunc) Receive(m rpc.Message, _ bool) error {
	f()
	if m.Type != 0 {
		return fmt.Errorf("%w: %q inside a publish or routing channel", rpc.ErrSlotNotFound, m.Name)
	}
	return nil
}
func (f discardFunc) Discard(error) { f() }

// routing attaches a router: a full dump of the rings now and after every refresh, until
// the client sends discard or disconnects (no close is sent then, as in the original).
func (s *Service) routing(ctx context.Context, req *rpc.Request) error {
	var id string
	if err := req.Args.Scan(&id); err != nil {
		return err
	}
	tx := req.Tx
	s.mu.Lock()
	s.routers[id] = tx
	dump := s.dumpLocked()
	s.mu.Unlock()
	req.Receive(discardFunc(func() {
		s.mu.Lock()
		if s.routers[id] == tx {
			delete(s.routers, id)
		}
		s.mu.Unlock()
	}))
	return tx.SendRaw(rpc.Write, dump)
}

// dumpLocked encodes the write args [{group: [[point, name], ...]}].
func (s *Service) dumpLocked() rpc.Raw {
	names := make([]string, 0, len(s.rings))
	for name := range s.rings {
		names = append(names, name)
	}
	slices.Sort(names)
	b := rpc.AppendArrayHeader(nil, 1)
	b = rpc.AppendMapHeader(b, len(names))
	for _, name := range names {
		b = rpc.AppendString(b, name)
		b, _ = s.rings[name].AppendMsgpack(b)
	}
	return b
}

func (s *Service) refresh(ctx context.Context, req *rpc.Request) error {
	var names []string
	if err := req.Args.Scan(&names); err != nil {
		return err
	}
	tx := req.Tx
	if !s.work.Go(func(ctx context.Context) {
		if err := s.Refresh(ctx, names); err != nil {
			tx.Error(errorTable.Wire(err))
			return
		}
		tx.Value()
	}) {
		return rpc.ErrNotConnected
	}
	return nil
}

// Refresh reloads the named routing groups from storage (every stored group if names is
// empty): a group that is gone or no longer tagged active is dropped. Attached routers
// then get a full dump.
func (s *Service) Refresh(ctx context.Context, names []string) error {
	return s.reload(ctx, names, true)
}

// refreshGroups loads every group at start, then reloads them every GroupRefresh and
// pushes a dump to the routers when something changed: groups written through another
// host reach this one's routers without a refresh call.
func (s *Service) refreshGroups(ctx context.Context) {
	if s.groups == nil {
		return
	}
	if err := s.reload(ctx, nil, true); err != nil && ctx.Err() == nil {
		s.log.Warn("loading routing groups failed", "err", err)
	}
	t := time.NewTicker(s.cfg.GroupRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.reload(ctx, nil, false); err != nil && ctx.Err() == nil {
			s.log.Debug("reloading routing groups failed", "err", err)
		}
	}
}

// reload reloads groups; the routers get a dump if force is set or the rings changed.
func (s *Service) reload(ctx context.Context, names []string, force bool) error {
	if s.groups == nil {
		return nil
	}
	active, err := s.groups.Find(ctx, GroupsCollection, GroupTags)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRoutingStorage, err)
	}
	all := len(names) == 0
	if all {
		names = active
	}
	loaded := map[string]*Ring{}
	var errs []error
	for _, name := range names {
		if !slices.Contains(active, name) {
			continue // removed or deactivated
		}
		blob, err := s.groups.Read(ctx, GroupsCollection, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: group %q: %v", ErrRoutingStorage, name, err))
			continue
		}
		members, err := DecodeGroup(blob)
		var ring *Ring
		if err == nil {
			ring, err = NewRing(members)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("group %q: %w", name, err))
			continue // not loaded: a nil ring would crash the dump and resolve
		}
		loaded[name] = ring
	}
	s.mu.Lock()
	before := s.dumpLocked()
	if all {
		s.rings = loaded
	} else {
		for _, name := range names {
			if r, ok := loaded[name]; ok {
				s.rings[name] = r
			} else {
				delete(s.rings, name)
			}
		}
	}
	dump := s.dumpLocked()
	routers := make([]*rpc.Tx, 0, len(s.routers))
	for _, tx := range s.routers {
		routers = append(routers, tx)
	}
	s.mu.Unlock()
	if !force && string(before) == string(dump) {
		return errors.Join(errs...)
	}
	for _, tx := range routers {
		tx.SendRaw(rpc.Write, dump) // a router whose client is gone is cleaned up by its discard
	}
	return errors.Join(errs...)
}

// Groups returns the names of the loaded routing groups.
func (s *Service) Groups() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.rings))
	for name := range s.rings {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
