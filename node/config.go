package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path less its NUL).
const maxSocketPath = 107

// Name is the node service's name.
const Name = "node"

// Storage collections the node reads and writes (plugins.md §2.2).
const (
	ManifestsCollection = "manifests"
	ProfilesCollection  = "profiles"
	AppsCollection      = "apps"
	RunlistsCollection  = "runlists"
	CrashlogsCollection = "crashlogs"
)

// Config configures the node service. The zero value is usable once RuntimeDir and
// SpoolDir are set (the daemon puts them under its data directory).
type Config struct {
	// Runlist names the runlist whose apps start at boot; none if empty.
	Runlist string `json:"runlist,omitempty"`
	// RuntimeDir holds the workers' unix sockets, <runtime>/<app>.<pid>.
	RuntimeDir string `json:"runtime_dir,omitempty"`
	// SpoolDir holds the unpacked app archives, <spool>/<app>.
	SpoolDir string `json:"spool_dir,omitempty"`
	// CgroupRoot is the node's cgroup hierarchy for the process isolate's CPU classes,
	// <root>/<class>/<app>.<uuid> ("/cocaine" when empty).
	CgroupRoot string `json:"cgroup_root,omitempty"`
}

// Validate reports every problem of c.
func (c Config) Validate() error {
	var errs []error
	for _, d := range []struct{ key, dir string }{{"runtime_dir", c.RuntimeDir}, {"spool_dir", c.SpoolDir}, {"cgroup_root", c.CgroupRoot}} {
		if d.dir != "" && !filepath.IsAbs(d.dir) {
			errs = append(errs, fmt.Errorf("node.%s %q must be an absolute path", d.key, d.dir))
		}
	}
	if len(c.RuntimeDir) > maxSocketPath-16 {
		errs = append(errs, fmt.Errorf("node.runtime_dir %q is too long: worker sockets <runtime_dir>/<app>.<pid> must fit in %d bytes", c.RuntimeDir, maxSocketPath))
	}
	return errors.Join(errs...)
}

// Storage is what the node needs from the storage backend. Read must return an error
// wrapping ErrNotFound for a missing key.
type Storage interface {
	Read(ctx context.Context, collection, key string) ([]byte, error)
	Write(ctx context.Context, collection, key string, value []byte, tags []string) error
	Find(ctx context.Context, collection string, tags []string) ([]string, error)
}

// Publisher publishes an app's service in the locator. withdraw removes it again and is
// safe to call more than once.
type Publisher interface {
	// capacity is how many requests the app takes at once (pool-limit × concurrency):
	// the locator spreads the clients of apps running on several hosts by it.
	Publish(name string, endpoints []rpc.Endpoint, graph *rpc.Graph, capacity int) (withdraw func(), err error)
}

// Listen opens the TCP listener of an app's service and says which endpoints to
// advertise for it. The node closes the listener.
type Listen func(name string) (net.Listener, []rpc.Endpoint, error)

// OutputSink receives every line a worker prints (stdout and stderr), with the app and
// the worker's uuid: the daemon sends them to the logging service. It must not block.
type OutputSink interface {
	WorkerOutput(app, uuid, line string)
}

// Isolate runs workers. Implementations are safe for concurrent use.
type Isolate interface {
	// Spawn starts one worker process. It returns once the process runs (or failed to
	// start); ctx bounds only the start.
	Spawn(ctx context.Context, spec SpawnSpec) (Process, error)
}

// SpawnSpec is one worker to start.
type SpawnSpec struct {
	App  string
	UUID string
	// Dir is the working directory: the app's spool directory.
	Dir string
	// Executable is the manifest's slave, resolved against Dir when relative.
	Executable string
	// Args are the arguments after the executable: --app A --endpoint E --locator L
	// --protocol 1 --uuid U, sorted by key as the original passes them.
	Args []string
	// Env is the full environment: the daemon's, then the manifest's.
	Env []string
	// AppEnv is the manifest's part of Env alone, for isolates that do not hand the
	// daemon's environment to a worker (containers).
	AppEnv []string
	// Output receives stdout and stderr, merged. Writes come from one goroutine.
	Output io.Writer
}

// Process is a started worker.
type Process interface {
	// Pid is the process id.
	Pid() int
	// Wait blocks until the process has exited and every resource the isolate made for
	// it (its cgroup) is gone, and all its output was written. It returns nil for exit
	// status 0, else an error saying why it ended (killed by the OOM killer, a signal,
	// an exit status). Call it once.
	Wait() error
	// Kill ends the process and everything it started at once. Safe to call more than
	// once, and after exit.
	Kill()
}

// IsolateFactory builds an isolate from a profile's isolate args. Registration is
// explicit: the daemon passes the list (Deps.Isolates).
type IsolateFactory struct {
	Type string
	// New validates args and returns the isolate. Errors should wrap ErrInvalidArgs.
	New func(args map[string]any) (Isolate, error)
}

// Deps are the node's collaborators.
type Deps struct {
	Storage   Storage
	Publisher Publisher
	Listen    Listen
	// Locator returns the locator endpoints passed to workers as --locator. Called at
	// each spawn, so it may become known after New.
	Locator  func() []rpc.Endpoint
	Output   OutputSink // nil: worker output goes only to crash logs
	Isolates []IsolateFactory
	Log      *slog.Logger
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}
