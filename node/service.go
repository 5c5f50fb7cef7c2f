package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cocaine/cocaine/internal/lifecycle"
	"github.com/cocaine/cocaine/rpc"
)

// Graph is the node service's protocol (node::v2, version 1, plugins.md §2.5).
var Graph = rpc.ServiceGraph(1,
	rpc.Method{Name: "start_app", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "pause_app", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "list", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "info", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "control", Dispatch: rpc.Streaming, Upstream: rpc.Terminal},
	rpc.Method{Name: "enqueue", Dispatch: rpc.Streaming, Upstream: rpc.Streaming},
)

// errInfoNotRunning is what info answers for an unknown app: the original threw a plain
// error, which went out as a generic invalid_argument.
var errInfoNotRunning = rpc.NewError(rpc.CategoryGeneric, int(syscall.EINVAL), "app is not running")

// Service is the node: the app table and the node::v2 service over it.
type Service struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	d     *rpc.Dispatcher
	group *lifecycle.Group // app starts and stops; every app's goroutines are below it

	mu       sync.Mutex
	apps     map[string]*app
	stopping bool
}

// New validates cfg and deps. It starts nothing.
func New(cfg Config, deps Deps) (*Service, error) {
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if cfg.RuntimeDir == "" || cfg.SpoolDir == "" {
		errs = append(errs, errors.New("node: runtime_dir and spool_dir are required"))
	}
	if deps.Storage == nil || deps.Publisher == nil || deps.Listen == nil {
		errs = append(errs, errors.New("node: storage, publisher and listen are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	deps.Log = deps.Log.With("component", "node")
	n := &Service{cfg: cfg, deps: deps, log: deps.Log, apps: map[string]*app{},
		group: lifecycle.NewGroup(context.Background())}
	d := rpc.NewDispatcher(Graph, errorTable, n.log)
	d.MustHandle("start_app", n.startApp)
	d.MustHandle("pause_app", n.pauseApp)
	d.MustHandle("list", n.list)
	d.MustHandle("info", n.info)
	d.MustHandle("control", n.control)
	d.MustHandle("enqueue", n.enqueue)
	n.d = d
	return n, nil
}

// Dispatcher serves the node graph.
func (n *Service) Dispatcher() *rpc.Dispatcher { return n.d }

// Run starts the runlist's apps, then waits for ctx. On cancellation it stops every app
// (terminating their workers) and returns when all of them have stopped.
func (n *Service) Run(ctx context.Context) error {
	for _, dir := range []string{n.cfg.RuntimeDir, n.cfg.SpoolDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("node: %w", err)
		}
	}
	if n.cfg.Runlist != "" {
		n.startRunlist(ctx)
	}
	<-ctx.Done()
	n.mu.Lock()
	n.stopping = true
	apps := n.apps
	n.apps = map[string]*app{}
	n.mu.Unlock()
	var wg sync.WaitGroup
	for _, a := range apps {
		wg.Go(func() {
			a.waitStarted() // an app still spooling is stopped once it is running
			a.stop()
		})
	}
	wg.Wait()
	n.group.Stop()
	return nil
}

// startRunlist starts every app of the boot runlist; failures are logged and skipped.
func (n *Service) startRunlist(ctx context.Context) {
	b, err := n.deps.Storage.Read(ctx, RunlistsCollection, n.cfg.Runlist)
	if err != nil {
		n.log.Error("reading the runlist failed", "runlist", n.cfg.Runlist, "err", err)
		return
	}
	v, err := rpc.Unmarshal(b)
	m, ok := v.(map[string]any)
	if err != nil || !ok {
		n.log.Error("the runlist is not a map of app to profile", "runlist", n.cfg.Runlist)
		return
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		profile, ok := m[name].(string)
		if !ok {
			n.log.Error("runlist entry has no profile name", "app", name)
			continue
		}
		n.start(name, profile, func(err error) {
			if err != nil {
				n.log.Error("starting a runlist app failed", "app", name, "profile", profile, "err", err)
			}
		})
	}
}

// maxAppName bounds an app's name, which becomes a directory, a socket and a service.
const maxAppName = 64

// ValidateAppName reports whether name can be an app: it names the spool directory, the
// worker socket and the published service, so it must be one path element.
func ValidateAppName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%w: %q", ErrInvalidName, name)
	case len(name) > maxAppName:
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalidName, len(name), maxAppName)
	case strings.ContainsAny(name, "/\\\x00"):
		return fmt.Errorf("%w: %q contains '/', '\\' or NUL", ErrInvalidName, name)
	}
	return nil
}

// start inserts the app and starts it in the background; done gets the result.
func (n *Service) start(name, profile string, done func(error)) error {
	if err := ValidateAppName(name); err != nil {
		return err
	}
	n.mu.Lock()
	if n.stopping {
		n.mu.Unlock()
		return fmt.Errorf("%w: the node is stopping", ErrShuttingDown)
	}
	if a, ok := n.apps[name]; ok {
		a.mu.Lock()
		state := a.state
		a.mu.Unlock()
		n.mu.Unlock()
		return fmt.Errorf("%w: app '%s' is %s", ErrAlreadyStarted, name, state)
	}
	a := &app{n: n, name: name, profileName: profile, deps: &n.deps, state: StateSpooling,
		log: n.log.With("app", name), startDone: make(chan struct{})}
	n.apps[name] = a
	n.mu.Unlock()
	ok := n.group.Go(func(ctx context.Context) {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Minute) // bounds storage reads and unpacking
		err := a.start(sctx)
		cancel()
		defer close(a.startDone)
		if err != nil {
			var le errLoad
			n.mu.Lock()
			if errors.As(err, &le) {
				if n.apps[name] == a {
					delete(n.apps, name)
				}
			} else {
				a.mu.Lock()
				a.state, a.cause = StateBroken, err
				a.mu.Unlock()
			}
			n.mu.Unlock()
			a.log.Error("app failed to start", "err", err)
		}
		done(err)
	})
	if !ok {
		close(a.startDone)
		n.mu.Lock()
		delete(n.apps, name)
		n.mu.Unlock()
		return fmt.Errorf("%w: the node is stopping", ErrShuttingDown)
	}
	return nil
}

func (n *Service) startApp(ctx context.Context, req *rpc.Request) error {
	var name, profile string
	if err := req.Args.Scan(&name, &profile); err != nil {
		return err
	}
	return n.start(name, profile, func(err error) {
		if err != nil {
			req.Tx.Error(wire(err))
			return
		}
		req.Tx.Value()
	})
}

func (n *Service) pauseApp(ctx context.Context, req *rpc.Request) error {
	var name string
	if err := req.Args.Scan(&name); err != nil {
		return err
	}
	n.mu.Lock()
	a, ok := n.apps[name]
	if ok {
		delete(n.apps, name)
	}
	n.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: app '%s' is not running", ErrNotRunning, name)
	}
	// Destruction goes on after the reply, as in the original. An app still spooling
	// is stopped once its start has finished.
	n.group.Go(func(context.Context) {
		a.waitStarted()
		a.stop()
	})
	return req.Tx.Value()
}

func (n *Service) list(ctx context.Context, req *rpc.Request) error {
	n.mu.Lock()
	names := make([]string, 0, len(n.apps))
	for name := range n.apps {
		names = append(names, name)
	}
	n.mu.Unlock()
	sort.Strings(names)
	return req.Tx.Value(names)
}

func (n *Service) lookup(name string) (*app, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	a, ok := n.apps[name]
	return a, ok
}

func (n *Service) info(ctx context.Context, req *rpc.Request) error {
	var name string
	var flags uint32
	if err := req.Args.Scan(&name, rpc.Optional(&flags)); err != nil {
		return err
	}
	a, ok := n.lookup(name)
	if !ok {
		return fmt.Errorf("%w: app '%s' is not running", errInfoNotRunning, name)
	}
	return a.info(req.Tx, flags)
}

func (n *Service) control(ctx context.Context, req *rpc.Request) error {
	var name string
	if err := req.Args.Scan(&name); err != nil {
		return err
	}
	a, ok := n.lookup(name)
	if !ok || a.running() == nil {
		// control is mute: like the original, an unknown app drops the connection
		return rpc.Fatal(fmt.Errorf("%w: app '%s' is not available", ErrNotRunning, name))
	}
	req.Receive(&controlStream{e: a.running()})
	return nil
}

func (n *Service) enqueue(ctx context.Context, req *rpc.Request) error {
	var name, event string
	if err := req.Args.Scan(&name, &event); err != nil {
		return err
	}
	a, ok := n.lookup(name)
	var e *engine
	if ok {
		e = a.running()
	}
	if e == nil {
		req.Receive(swallow{})
		return fmt.Errorf("%w: application %s is not found", ErrNotRunning, name)
	}
	if err := e.enqueue(event, req); err != nil {
		req.Receive(swallow{})
		return err
	}
	return nil
}
