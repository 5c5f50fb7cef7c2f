package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/cocaine/cocaine/internal/lifecycle"
	"github.com/cocaine/cocaine/rpc"
)

// App states as info reports them (plugins.md §2.6).
const (
	StateSpooling = "spooling"
	StateRunning  = "running"
	StateBroken   = "broken"
	StateStopped  = "stopped"
)

// app is one entry of the node's app table: its manifest, profile, files, the unix
// socket its workers connect to, its service and its engine.
//
//	spooling --spooled, socket open, published--> running --pause_app--> (removed; stopping)
//	    \--manifest/profile/isolate errors--> (removed)
//	    \--spool, socket or publish errors--> broken --pause_app--> (removed)
type app struct {
	n           *Service
	name        string
	profileName string
	deps        *Deps
	log         *slog.Logger

	// Set by start before the app is shared with the engine and the servers.
	manifest  Manifest
	profile   Profile
	iso       Isolate
	dir       string
	endpoint  string
	e         *engine
	group     *lifecycle.Group
	startDone chan struct{} // closed when start has returned, however it went

	mu      sync.Mutex
	state   string
	cause   error // why it is broken
	started time.Time
}

// errLoad marks errors after which the app is not kept in the table.
type errLoad struct{ error }

func (e errLoad) Unwrap() error { return e.error }

// start loads, spools and runs the app. A load error leaves nothing behind; any later
// error leaves the app broken, with nothing running.
func (a *app) start(ctx context.Context) error {
	if err := a.load(ctx); err != nil {
		return errLoad{err}
	}
	if err := a.spool(ctx); err != nil {
		return err
	}
	return a.run()
}

func (a *app) load(ctx context.Context) error {
	st := a.deps.Storage
	b, err := st.Read(ctx, ManifestsCollection, a.name)
	if err != nil {
		return fmt.Errorf("node: manifest of app %q: %w", a.name, err)
	}
	if a.manifest, err = DecodeManifest(b); err != nil {
		return fmt.Errorf("app %q: %w", a.name, err)
	}
	b, err = st.Read(ctx, ProfilesCollection, a.profileName)
	if err != nil {
		return fmt.Errorf("node: profile %q: %w", a.profileName, err)
	}
	if a.profile, err = DecodeProfile(a.profileName, b); err != nil {
		return err
	}
	typ := a.profile.Isolate.Type
	for _, f := range a.deps.Isolates {
		if f.Type == typ {
			if a.iso, err = f.New(a.profile.Isolate.Args); err != nil {
				return fmt.Errorf("profile %q: isolate %q: %w", a.profileName, typ, err)
			}
			return nil
		}
	}
	return fmt.Errorf("%w: profile %q names isolate %q", ErrUnknownIsolate, a.profileName, typ)
}

// spool unpacks apps/<name> into the spool directory. An app whose executable is an
// absolute path needs no archive.
func (a *app) spool(ctx context.Context) error {
	a.dir = filepath.Join(a.n.cfg.SpoolDir, a.name)
	b, err := a.deps.Storage.Read(ctx, AppsCollection, a.name)
	if errors.Is(err, ErrNotFound) && filepath.IsAbs(a.manifest.Slave) {
		return os.MkdirAll(a.dir, 0o755)
	}
	if err != nil {
		return fmt.Errorf("%w: archive of app %q: %v", ErrSpool, a.name, err)
	}
	if err := Unpack(UnwrapArchive(b), a.dir); err != nil {
		return fmt.Errorf("app %q: %w", a.name, err)
	}
	return nil
}

// run opens the worker socket and the app's service, publishes it and starts the engine.
func (a *app) run() error {
	a.endpoint = filepath.Join(a.n.cfg.RuntimeDir, a.name+"."+strconv.Itoa(os.Getpid()))
	if len(a.endpoint) > maxSocketPath {
		return fmt.Errorf("%w: worker socket path %q is longer than %d bytes (shorten node.runtime_dir or the app name)", ErrResource, a.endpoint, maxSocketPath)
	}
	os.Remove(a.endpoint) // a socket left by a daemon that crashed
	wln, err := net.Listen("unix", a.endpoint)
	if err != nil {
		return fmt.Errorf("%w: worker socket: %v", ErrResource, err)
	}
	sln, eps, err := a.deps.Listen(a.name)
	if err != nil {
		wln.Close()
		os.Remove(a.endpoint)
		return fmt.Errorf("%w: service port: %v", ErrPublish, err)
	}
	a.e = newEngine(a)
	a.e.publish = func() (func(), error) {
		return a.deps.Publisher.Publish(a.name, eps, AppGraph, a.profile.PoolLimit*a.profile.Concurrency)
	}
	if a.profile.PublishOn == 0 { // publish before answering start_app, as the original
		if a.e.withdraw, err = a.e.publish(); err != nil {
			wln.Close()
			sln.Close()
			os.Remove(a.endpoint)
			return fmt.Errorf("%w: %v", ErrPublish, err)
		}
	}
	a.group = lifecycle.NewGroup(context.Background())
	a.e.sends = a.group
	srv := rpc.NewServer(a.dispatcher(), rpc.SessionConfig{Log: a.log})
	a.group.Go(func(ctx context.Context) { a.e.run() })
	a.group.Go(func(ctx context.Context) { srv.Serve(ctx, sln) })
	a.group.Go(func(ctx context.Context) { a.serveWorkers(ctx, wln) })
	a.mu.Lock()
	a.state, a.started = StateRunning, time.Now()
	a.mu.Unlock()
	a.log.Info("app started", "profile", a.profileName, "endpoints", fmt.Sprint(eps))
	return nil
}

// stop terminates the workers, then closes the service and the socket. It blocks until
// everything the app started has ended.
func (a *app) stop() {
	if a.group == nil {
		return // broken before it ran anything
	}
	a.e.stop()
	<-a.e.done
	a.group.Stop()
	os.Remove(a.endpoint)
	a.log.Info("app stopped")
}

// serveWorkers accepts worker connections on the unix socket.
func (a *app) serveWorkers(ctx context.Context, ln net.Listener) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	d := a.workerDispatcher()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				a.log.Error("worker socket failed", "err", err)
			}
			return
		}
		// Not strict: a worker may answer on a channel the node gave up (a timed-out
		// request); those messages are dropped rather than killing the worker.
		s := rpc.NewSession(conn, rpc.SessionConfig{Dispatcher: d, Log: a.log})
		wg.Go(func() {
			if err := s.Run(ctx); err != nil {
				a.log.Warn("worker connection closed on a protocol error", "err", err)
			}
		})
	}
}

// info is node.info for this app (plugins.md §2.6).
func (a *app) info(tx *rpc.Tx, flags uint32) error {
	a.mu.Lock()
	state, cause, started := a.state, a.cause, a.started
	a.mu.Unlock()
	switch state {
	case StateSpooling:
		return tx.Value(map[string]any{"state": state})
	case StateBroken:
		e := wire(cause)
		return tx.Value(map[string]any{"state": state, "error": e.Code, "cause": e.Message})
	}
	if flags&InfoOverseerReport == 0 {
		return a.e.brief(tx, started)
	}
	return a.e.info(tx, flags, true)
}

// running returns the engine of a running app, nil otherwise.
func (a *app) running() *engine {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state != StateRunning {
		return nil
	}
	return a.e
}

// waitStarted blocks while the app is spooling.
func (a *app) waitStarted() { <-a.startDone }
