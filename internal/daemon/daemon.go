// Package daemon builds every component of a cocaine node from a Config, in dependency
// order, and runs them: the Raft node with the replicated state machines (unicorn and
// storage), then the services (locator, logging, storage, unicorn, cluster), each on its
// own port and exposed in the locator's registry.
//
//	d, err := daemon.New(cfg, log) // validates; starts nothing
//	go d.Run(ctx)                  // blocks until ctx is done or a component fails
//	<-d.Ready()                    // every service listens and is resolvable
//	ep := d.Endpoint("locator")
//
// A host with no Raft state bootstraps a single-host cluster, unless raft.join names
// members to join through. Shutdown runs in the reverse order: the services stop
// first (they depend on Raft), then the Raft node, which leaves the cluster first when
// raft.leave_on_shutdown is set. Run returns only when every goroutine, listener,
// connection and file it opened is closed again.
package daemon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cocaine/cocaine/locator"
	"github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/node/isolate/process"
	"github.com/cocaine/cocaine/raft"
	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/services"
	"github.com/cocaine/cocaine/services/cluster"
	"github.com/cocaine/cocaine/services/logging"
	"github.com/cocaine/cocaine/services/storage"
	"github.com/cocaine/cocaine/unicorn"
)

// Tags of the replicated state machines in the Raft log (raft.Mux).
const (
	tagUnicorn = 'u'
	tagStorage = 's'
)

// Daemon is one cocaine node.
type Daemon struct {
	cfg   Config
	log   *slog.Logger
	ready chan struct{}
	stop  chan struct{} // closed by Shutdown
	once  sync.Once

	// Hooks for tests (internal/testcluster): a listener for the raft port and the
	// dialer of raft traffic.
	RaftListener net.Listener
	RaftDial     func(ctx context.Context, addr string) (net.Conn, error)

	mu        sync.Mutex
	endpoints map[string][]rpc.Endpoint
	uuid      string
	rn        *raft.Node
	unicorn   *unicorn.Service
}

// New validates cfg. It starts nothing and touches no file.
func New(cfg Config, log *slog.Logger) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Daemon{cfg: cfg, log: log, ready: make(chan struct{}), stop: make(chan struct{}), endpoints: map[string][]rpc.Endpoint{}}, nil
}

// Ready is closed once every service listens and is exposed in the locator, and a
// joining host has been admitted to the cluster.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// Shutdown makes Run return as if its context ended (cocaine-tool cluster leave uses
// it). It does not wait.
func (d *Daemon) Shutdown() { d.once.Do(func() { close(d.stop) }) }

// Endpoint returns the advertised endpoints of a built-in service, once Ready.
func (d *Daemon) Endpoint(name string) []rpc.Endpoint {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.endpoints[name]
}

// UUID is the node's id, once Ready.
func (d *Daemon) UUID() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.uuid
}

// Raft is the node's Raft server, once Ready (for tests and benchmarks).
func (d *Daemon) Raft() *raft.Node {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rn
}

// Unicorn is the node's unicorn service, once Ready.
func (d *Daemon) Unicorn() *unicorn.Service {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.unicorn
}

// service is one built-in service with its listener.
type service struct {
	name string
	svc  services.Service
	ln   net.Listener
}

// Run starts the node and blocks until ctx is done (nil) or a component fails (its
// error). Everything it started is stopped when it returns.
func (d *Daemon) Run(ctx context.Context) (err error) {
	cfg := d.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	id, err := loadUUID(cfg.DataDir, cfg.UUID)
	if err != nil {
		return err
	}
	d.log.Info("starting node", "uuid", id, "data_dir", cfg.DataDir)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // Shutdown ends Run as a cancelled context does
		select {
		case <-d.stop:
			cancel()
		case <-ctx.Done():
		}
	}()

	// The replicated state machines, then the Raft node that drives them.
	ucfg := cfg.Unicorn.unicornConfig()
	store, err := unicorn.NewStore(ucfg)
	if err != nil {
		return err
	}
	state, err := storage.NewReplicatedState(storage.ReplicatedConfig{MaxValueSize: cfg.Storage.MaxValueSize})
	if err != nil {
		return err
	}
	mux := raft.NewMux()
	mux.Register(tagUnicorn, store)
	mux.Register(tagStorage, storageFSM{state})

	raftLn := d.RaftListener
	if raftLn == nil {
		if raftLn, err = d.listen("raft"); err != nil {
			return err
		}
	}
	rcfg := cfg.Raft.raftConfig()
	rcfg.ID = id
	rcfg.Dir = filepath.Join(cfg.DataDir, "raft")
	rcfg.Listener = raftLn
	rcfg.Dial = d.RaftDial
	rcfg.Bootstrap = len(cfg.Raft.Join) == 0
	if rcfg.Advertise, err = d.raftAdvertise(raftLn); err != nil {
		raftLn.Close()
		return err
	}
	rn, err := raft.New(rcfg, mux, d.log)
	if err != nil {
		raftLn.Close()
		return err
	}
	uni, err := unicorn.New(ucfg, store, rn.Sub(tagUnicorn), d.log)
	if err != nil {
		raftLn.Close()
		return err
	}
	for name, h := range uni.LeaderHandlers() {
		rn.HandleLeader(name, raft.LeaderHandler(h))
	}

	raftCtx, raftCancel := context.WithCancel(context.Background())
	defer raftCancel()
	raftDone := make(chan error, 1) // Run's one result
	go func() { raftDone <- rn.Run(raftCtx) }()
	defer func() {
		raftCancel()
		if rerr := <-raftDone; rerr != nil && err == nil {
			err = rerr
		}
	}()
	select {
	case <-rn.Started():
	case rerr := <-raftDone:
		raftDone <- rerr
		return rerr
	}

	blobs, err := d.newBlobs(id, state, rn.Sub(tagStorage))
	if err != nil {
		return err
	}
	backend := storage.NewReplicated(state, rn.Sub(tagStorage), blobs)
	defer backend.Close()

	reg := locator.NewRegistry()
	locCfg := locator.Config{
		UUID: id, Restrict: cfg.Locator.Restrict, Extra: cfg.Locator.Extra,
		AnnounceLoopback: announceLoopback(rcfg.Advertise), GroupRefresh: time.Duration(cfg.Locator.GroupRefresh),
		Proxy: cfg.Locator.Proxy, ProxyHost: cfg.Network.Endpoint,
	}
	if locCfg.Proxy && len(cfg.Network.Advertise) > 0 {
		locCfg.ProxyHost = cfg.Network.Advertise[0]
	}
	loc, err := locator.New(locCfg, reg, backend, d.log,
		locator.WithCluster(clusterLocator{uni}, func() []rpc.Endpoint { return d.Endpoint(locator.Name) }))
	if err != nil {
		return err
	}
	lg, err := logging.New(cfg.Logging, d.log, logging.WithFilterStore(logFilters{uni}))
	if err != nil {
		return err
	}
	defer lg.Close()
	cl, err := cluster.New(cluster.Config{MaxSnapshotSize: rcfg.MaxSnapshotSize, Shutdown: d.Shutdown}, clusterRaft{rn}, d.log)
	if err != nil {
		return err
	}
	nd, runcHost, err := d.newNode(backend, reg, lg)
	if err != nil {
		return err
	}
	// Runs after every service stopped (defers run last in, first out): the workers are
	// gone, so the node's class groups are empty.
	defer process.RemoveHierarchy(d.nodeCgroupRoot())
	all := []*service{
		{name: locator.Name, svc: loc},
		{name: logging.Name, svc: lg},
		{name: storage.BlobsName, svc: blobs}, // before storage: a write names its endpoints
		{name: storage.Name, svc: storage.New(backend, d.log)},
		{name: unicorn.Name, svc: uni},
		{name: cluster.Name, svc: cl},
		{name: node.Name, svc: nd},
	}
	// Listeners first, so a port conflict fails the start before anything runs.
	defer func() {
		for _, s := range all {
			if s.ln != nil {
				s.ln.Close()
			}
		}
	}()
	for _, s := range all {
		if s.ln, err = d.listen(s.name); err != nil {
			return err
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	if runcHost != nil {
		// Beside the node, which ends its containers as it stops; the host then
		// removes the network and what else it made.
		g.Go(func() error { return runcHost.Run(gctx) })
	}
	sessCfg := rpc.SessionConfig{MaxFrameSize: cfg.RPC.MaxFrameSize, Log: d.log}
	for _, s := range all {
		eps, err := d.advertise(s.ln.Addr().(*net.TCPAddr))
		if err != nil {
			return err
		}
		disp := s.svc.Dispatcher()
		withdraw, err := reg.Expose(locator.Entry{
			Name: s.name, Endpoints: eps, Version: disp.Graph().Version, Graph: disp.Graph(),
			Restricted: s.name == locator.Name || s.name == cluster.Name || s.name == storage.BlobsName,
		})
		if err != nil {
			return err
		}
		defer withdraw()
		d.mu.Lock()
		d.endpoints[s.name] = eps
		d.mu.Unlock()
		srv := rpc.NewServer(disp, sessCfg)
		g.Go(func() error { return srv.Serve(gctx, s.ln) })
		g.Go(func() error {
			if err := s.svc.Run(gctx); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			return nil
		})
		d.log.Info("service listening", "service", s.name, "endpoints", fmt.Sprint(eps))
	}
	if len(cfg.Raft.Join) > 0 && rn.Fresh() {
		// A restarted member is in the configuration already; raft brings it back.
		if err := d.join(gctx, rn); err != nil {
			cancel()
			g.Wait()
			return err
		}
	}
	d.mu.Lock()
	d.uuid = id
	d.rn = rn
	d.unicorn = uni
	d.mu.Unlock()
	close(d.ready)
	err = g.Wait()
	d.log.Info("node stopped", "uuid", id)
	return err
}

// storageFSM gives the storage state the raft.FSM signature (services may not import
// raft).
type storageFSM struct{ *storage.ReplicatedState }

func (f storageFSM) Snapshot() (raft.Snapshot, error) {
	s, err := f.ReplicatedState.Snapshot()
	if err != nil {
		return nil, err
	}
	return s, nil
}

// join admits this host to the cluster through the locators of raft.join: it asks the
// first that answers (its cluster service forwards to the leader) to add this host's
// raft address. A host that is already a member (a restart) is admitted at once.
func (d *Daemon) join(ctx context.Context, rn *raft.Node) error {
	var lastErr error
	for attempt := 0; ; attempt++ {
		for _, j := range d.cfg.Raft.Join {
			ep, _ := joinEndpoint(j)
			err := d.joinThrough(ctx, ep, rn)
			if err == nil {
				d.log.Info("joined the cluster", "through", ep.String())
				return nil
			}
			lastErr = err
			d.log.Warn("join attempt failed", "through", ep.String(), "err", err)
		}
		t := time.NewTimer(min(100*time.Millisecond<<min(attempt, 5), 5*time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("join: %w (last: %v)", ctx.Err(), lastErr)
		case <-t.C:
		}
	}
}

func (d *Daemon) joinThrough(ctx context.Context, locatorEP rpc.Endpoint, rn *raft.Node) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := rpc.Service(ctx, []rpc.Endpoint{locatorEP}, cluster.Name, rpc.DialConfig{Log: d.log})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Call(ctx, "join", rn.ID(), rn.Addr())
	if err != nil {
		return err
	}
	_, err = ch.Get(ctx)
	return err
}

// raftAdvertise is the raft address other hosts dial: raft.advertise, else the first
// advertised address of the node with the raft port.
func (d *Daemon) raftAdvertise(ln net.Listener) (string, error) {
	if d.cfg.Raft.Advertise != "" {
		return d.cfg.Raft.Advertise, nil
	}
	eps, err := d.advertise(ln.Addr().(*net.TCPAddr))
	if err != nil {
		return "", err
	}
	return eps[0].String(), nil
}

// listen binds the service's port: pinned, else the first free port of the shared range
// (tried in random order, as the original shuffles it), else one the kernel picks.
func (d *Daemon) listen(name string) (net.Listener, error) {
	n := d.cfg.Network
	host := n.Endpoint
	if port, ok := n.Pinned[name]; ok {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("%s: listen on pinned port %d: %w", name, port, err)
		}
		return ln, nil
	}
	if len(n.Shared) == 2 {
		ports := mrand.Perm(n.Shared[1] - n.Shared[0])
		for _, p := range ports {
			ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(n.Shared[0]+p)))
			if err == nil {
				return ln, nil
			}
		}
		return nil, fmt.Errorf("%s: no free port in the shared range [%d, %d)", name, n.Shared[0], n.Shared[1])
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("%s: listen: %w", name, err)
	}
	return ln, nil
}

// advertise computes the endpoints published for a bound address (protocol.md §7.6).
func (d *Daemon) advertise(addr *net.TCPAddr) ([]rpc.Endpoint, error) {
	n := d.cfg.Network
	port := uint16(addr.Port)
	if len(n.Advertise) > 0 {
		eps := make([]rpc.Endpoint, len(n.Advertise))
		for i, a := range n.Advertise {
			eps[i] = rpc.Endpoint{Host: a, Port: port}
		}
		return eps, nil
	}
	if !addr.IP.IsUnspecified() {
		return []rpc.Endpoint{{Host: addr.IP.String(), Port: port}}, nil
	}
	host := n.Hostname
	if host == "" {
		var err error
		if host, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("advertise: %w", err)
		}
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return nil, fmt.Errorf("advertise: the bind address is unspecified and host name %q does not resolve (set network.advertise): %v", host, err)
	}
	eps := make([]rpc.Endpoint, 0, len(ips))
	for _, ip := range ips {
		eps = append(eps, rpc.Endpoint{Host: ip.String(), Port: port})
	}
	return eps, nil
}

// loadUUID returns the configured uuid, or the one kept in the data dir, or a new one
// that is then kept there so the node keeps its identity across restarts.
func loadUUID(dir, configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	path := filepath.Join(dir, "uuid")
	data, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(data))
		if id == "" {
			return "", fmt.Errorf("uuid file %s is empty; remove it to generate a new id", path)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("uuid: %w", err)
	}
	id := newUUID()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("uuid: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("uuid: %w", err)
	}
	return id, nil
}

// newUUID returns a random lowercase RFC 4122 uuid, as the original generates.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
