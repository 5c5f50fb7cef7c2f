package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"

	"github.com/cocaine/cocaine/locator"
	"github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/node/isolate/process"
	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/services/logging"
	"github.com/cocaine/cocaine/services/storage"
)

// DefaultCgroupRoot is the node's cgroup hierarchy unless node.cgroup_root says otherwise.
const DefaultCgroupRoot = "/cocaine"

// newNode builds the node service over the storage backend, the locator's registry
// (apps are published there, each on its own port) and the logging service (worker
// output goes there).
func (d *Daemon) newNode(backend storage.Backend, reg *locator.Registry, lg *logging.Service) (*node.Service, runner, error) {
	cfg := d.cfg.Node.Config
	if cfg.RuntimeDir == "" {
		cfg.RuntimeDir = filepath.Join(d.cfg.DataDir, "run")
	}
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = filepath.Join(d.cfg.DataDir, "spool")
	}
	cfg.CgroupRoot = d.nodeCgroupRoot()
	runcIso, runcHost, err := d.newRunc(cfg.CgroupRoot)
	if err != nil {
		return nil, nil, err
	}
	nd, err := node.New(cfg, node.Deps{
		Storage:   nodeStorage{backend},
		Publisher: nodePublisher{reg},
		Listen:    d.listenApp,
		Locator:   func() []rpc.Endpoint { return d.Endpoint(locator.Name) },
		Output:    nodeOutput{lg},
		Isolates:  append(process.Factories(process.Options{Root: cfg.CgroupRoot, Log: d.log}), runcIso),
		Log:       d.log,
	})
	return nd, runcHost, err
}

// refusedRunc is a runc factory that refuses every profile with why.
func refusedRunc(why string) node.IsolateFactory {
	return node.IsolateFactory{Type: "runc", New: func(map[string]any) (node.Isolate, error) {
		return nil, fmt.Errorf("%w: %s", node.ErrUnknownIsolate, why)
	}}
}

// runner is a component that runs beside the services: Run blocks until ctx ends.
type runner interface {
	Run(ctx context.Context) error
}

// nodeCgroupRoot is the node's cgroup hierarchy: node.cgroup_root or DefaultCgroupRoot.
func (d *Daemon) nodeCgroupRoot() string {
	if d.cfg.Node.CgroupRoot != "" {
		return d.cfg.Node.CgroupRoot
	}
	return DefaultCgroupRoot
}

// listenApp opens an app's service port by the same rules as the built-in services.
func (d *Daemon) listenApp(name string) (net.Listener, []rpc.Endpoint, error) {
	ln, err := d.listen(name)
	if err != nil {
		return nil, nil, err
	}
	eps, err := d.advertise(ln.Addr().(*net.TCPAddr))
	if err != nil {
		ln.Close()
		return nil, nil, err
	}
	return ln, eps, nil
}

// nodeStorage gives the node the backend, with missing keys as node.ErrNotFound.
type nodeStorage struct{ b storage.Backend }

func (s nodeStorage) Read(ctx context.Context, collection, key string) ([]byte, error) {
	v, err := s.b.Read(ctx, collection, key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", node.ErrNotFound, err)
	}
	return v, err
}

func (s nodeStorage) Write(ctx context.Context, collection, key string, value []byte, tags []string) error {
	return s.b.Write(ctx, collection, key, value, tags)
}

func (s nodeStorage) Find(ctx context.Context, collection string, tags []string) ([]string, error) {
	return s.b.Find(ctx, collection, tags)
}

// nodePublisher exposes app services in the locator's registry.
type nodePublisher struct{ reg *locator.Registry }

func (p nodePublisher) Publish(name string, eps []rpc.Endpoint, g *rpc.Graph, capacity int) (func(), error) {
	return p.reg.Expose(locator.Entry{Name: name, Endpoints: eps, Version: g.Version, Graph: g, Weight: uint32(max(capacity, 1))})
}

// nodeOutput sends worker output lines to the logging service as app/<name> records
// with the app and the worker's uuid.
type nodeOutput struct{ lg *logging.Service }

func (o nodeOutput) WorkerOutput(app, uuid, line string) {
	o.lg.Submit(&logging.Record{
		Severity: logging.SeverityInfo,
		Backend:  "app/" + app,
		Message:  line,
		Attrs:    []logging.Attr{{Name: "app", Value: app}, {Name: "uuid", Value: uuid}},
	})
}
