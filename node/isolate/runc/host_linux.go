//go:build linux

package runc

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cocaine/cocaine/internal/lifecycle"
	"github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/node/isolate/process"
	"github.com/cocaine/cocaine/node/netshape"
)

// Options configure a Host.
type Options struct {
	// Config is node.runc; StateDir is required (the daemon defaults it under its data
	// directory), BasesDir defaults to <state_dir>/bases.
	Config Config
	// CgroupRoot is the node's cgroup hierarchy ("/cocaine"): a container's group is
	// <root>/<class>/<container id>, beside the process isolate's workers.
	CgroupRoot string
	Log        *slog.Logger
}

// Host is what every runc Isolate of a daemon shares: the state directory, the
// network, the containers alive. New validates; Run checks the kernel, removes what a
// killed daemon left, sets up the network, keeps the batch network ceiling current and,
// once its context ends and the node has stopped its workers, removes everything.
// Until Run has checked the kernel, the factory's New waits for it.
type Host struct {
	opts Options
	cfg  Config
	log  *slog.Logger
	tag  string // names what this host creates: container ids c<tag>-<uuid>, veths, the IFB

	shaper *netshape.Shaper // nil without node.runc.network

	ready   chan struct{} // closed once refused is known
	refused error         // why the isolate cannot run here; nil when it can
	memsw   bool          // memory+swap accounting exists: limits cover swap too

	// checks are the kernel probes; tests replace them.
	checks []check

	mu       sync.Mutex
	stopping bool
	live     map[string]*container
	wg       sync.WaitGroup // one per live container
}

// New validates opts. It starts nothing and touches no file.
func New(opts Options) (*Host, error) {
	cfg := opts.Config
	if cfg.StateDir == "" {
		return nil, errors.New("node.runc.state_dir is required")
	}
	if cfg.BasesDir == "" {
		cfg.BasesDir = filepath.Join(cfg.StateDir, "bases")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.CgroupRoot == "" || !filepath.IsAbs(opts.CgroupRoot) {
		return nil, fmt.Errorf("runc: the cgroup root %q must be an absolute cgroup path", opts.CgroupRoot)
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	h := &Host{
		opts: opts, cfg: cfg, log: opts.Log.With("component", "runc"),
		tag: stateTag(cfg.StateDir), ready: make(chan struct{}), live: map[string]*container{},
		checks: kernelChecks,
	}
	if cfg.Network != nil {
		s, err := netshape.New(*cfg.Network, filepath.Join(cfg.StateDir, "netns"), h.tag, h.log)
		if err != nil {
			return nil, err
		}
		h.shaper = s
	}
	return h, nil
}

// stateTag is four hex digits that tell this daemon's containers, interfaces and
// cgroups from another's on the same host: a hash of its state directory.
func stateTag(dir string) string {
	f := fnv.New32a()
	f.Write([]byte(filepath.Clean(dir)))
	return fmt.Sprintf("%04x", f.Sum32()&0xffff)
}

// Tag is the host's name tag.
func (h *Host) Tag() string { return h.tag }

// Shaper is the container network, nil without node.runc.network.
func (h *Host) Shaper() *netshape.Shaper { return h.shaper }

// Ready is closed once Run has decided whether containers can run here.
func (h *Host) Ready() <-chan struct{} { return h.ready }

// Refused says why the isolate cannot run on this host, once Ready; nil when it can.
func (h *Host) Refused() error { return h.refused }

// Run prepares the host and serves until ctx ends, then waits for the containers the
// node still has to end and removes what the host created. A host that cannot run
// containers logs the reason once, refuses every runc profile with it, and Run returns
// nil when ctx ends: the rest of the daemon runs on.
func (h *Host) Run(ctx context.Context) error {
	if err := h.prepare(); err != nil {
		h.refused = fmt.Errorf("%w: the runc isolate cannot run on this host: %v", node.ErrUnknownIsolate, err)
		h.log.Error("the runc isolate is refused", "reason", err.Error())
		close(h.ready)
		<-ctx.Done()
		return nil
	}
	close(h.ready)
	g := lifecycle.NewGroup(ctx)
	if h.shaper != nil {
		g.Go(func(ctx context.Context) {
			if err := h.shaper.Run(ctx); err != nil {
				h.log.Error("the network ceiling loop failed", "err", err)
			}
		})
	}
	<-ctx.Done()
	g.Stop()
	h.shutdown()
	return nil
}

// stopGrace is how long a stopping host waits for the node to end its containers
// before it kills what is left.
const stopGrace = 30 * time.Second

// shutdown refuses new containers, waits for the live ones to end (the node kills its
// workers as it stops), then removes the network and the host's cgroup classes.
func (h *Host) shutdown() {
	h.mu.Lock()
	h.stopping = true
	h.mu.Unlock()
	done := make(chan struct{})
	// A waiter that only turns wg.Wait into a channel; it ends with the last container.
	go func() { h.wg.Wait(); close(done) }()
	t := time.NewTimer(stopGrace)
	select {
	case <-done:
		t.Stop()
	case <-t.C:
		h.mu.Lock()
		left := make([]*container, 0, len(h.live))
		for _, c := range h.live {
			left = append(left, c)
		}
		h.mu.Unlock()
		h.log.Warn("containers still running after the node stopped: killing them", "count", len(left))
		for _, c := range left {
			c.Kill()
		}
		t.Reset(stopGrace)
		select {
		case <-done: // their Wait released them
		case <-t.C:
			h.log.Error("containers not waited for after their kill: the next start removes them", "count", len(left))
		}
	}
	if h.shaper != nil {
		if err := h.shaper.Close(); err != nil {
			h.log.Error("removing the container network failed", "err", err)
		}
	}
	process.RemoveHierarchy(h.opts.CgroupRoot)
	h.log.Info("runc isolate stopped")
}

// prepare checks the kernel, removes what a killed daemon left, and sets up the network.
func (h *Host) prepare() error {
	for _, dir := range []string{h.cfg.StateDir, h.containersDir(), h.rootfsDir(), h.emptyDir()} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("state directory: %w", err)
		}
	}
	var missing []string
	for _, c := range h.checks {
		if err := c.fn(h); err != nil {
			missing = append(missing, c.name+": "+err.Error())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("this host lacks what containers need: %s", strings.Join(missing, "; "))
	}
	h.removeStale()
	if h.shaper != nil {
		if err := h.shaper.Setup(); err != nil {
			return err
		}
	}
	h.log.Info("runc isolate ready", "state_dir", h.cfg.StateDir, "tag", h.tag, "network", h.shaper != nil)
	return nil
}

func (h *Host) containersDir() string { return filepath.Join(h.cfg.StateDir, "containers") }
func (h *Host) rootfsDir() string     { return filepath.Join(h.cfg.StateDir, "rootfs") }
func (h *Host) emptyDir() string      { return filepath.Join(h.cfg.StateDir, "empty") }

// containerID is the libcontainer id of a worker: c<tag>-<uuid>.
func (h *Host) containerID(uuid string) string {
	var b strings.Builder
	b.WriteString("c" + h.tag + "-")
	for _, r := range uuid {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// track registers a starting container; it fails once the host is stopping.
func (h *Host) track(c *container) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopping {
		return fmt.Errorf("%w: the runc isolate is stopping", node.ErrShuttingDown)
	}
	if _, ok := h.live[c.id]; ok {
		return fmt.Errorf("%w: container %s exists already", node.ErrResource, c.id)
	}
	h.live[c.id] = c
	h.wg.Add(1)
	return nil
}

// untrack forgets a container whose resources are all gone.
func (h *Host) untrack(c *container) {
	h.mu.Lock()
	delete(h.live, c.id)
	h.mu.Unlock()
	h.wg.Done()
}

// Factory is the isolate under the type name profiles use, "runc".
func (h *Host) Factory() node.IsolateFactory {
	return node.IsolateFactory{Type: "runc", New: h.newIsolate}
}

// readyWait bounds how long a profile waits for Run to check the kernel.
const readyWait = 30 * time.Second

func (h *Host) newIsolate(m map[string]any) (node.Isolate, error) {
	t := time.NewTimer(readyWait)
	defer t.Stop()
	select {
	case <-h.ready:
	case <-t.C:
		return nil, fmt.Errorf("%w: the runc isolate is still checking the host after %s", node.ErrResource, readyWait)
	}
	if h.refused != nil {
		return nil, h.refused
	}
	a, err := ParseArgs(m)
	if err != nil {
		return nil, err
	}
	var errs []error
	if _, _, err := h.base(a.Base); err != nil {
		errs = append(errs, err)
	}
	switch {
	case a.Network == "" && h.shaper != nil:
		a.Network = NetworkBridge
	case a.Network == "":
		a.Network = NetworkNone
	case a.Network == NetworkBridge && h.shaper == nil:
		errs = append(errs, fmt.Errorf("%w: network %q needs node.runc.network in this host's config", node.ErrInvalidArgs, NetworkBridge))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Isolate{h: h, args: a}, nil
}

// base resolves a base layer: the directory to put under the app's files, and the host
// directories to bind read-only into the container.
func (h *Host) base(name string) (string, []string, error) {
	if name == EmptyBase {
		return h.emptyDir(), nil, nil
	}
	if dirs, ok := h.cfg.HostBases[name]; ok {
		for _, d := range dirs {
			if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
				return "", nil, fmt.Errorf("%w: base %q: host directory %s is not a directory on this host", node.ErrInvalidArgs, name, d)
			}
		}
		return h.emptyDir(), dirs, nil
	}
	dir := filepath.Join(h.cfg.BasesDir, name)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", nil, fmt.Errorf("%w: base %q is not on this host: no node.runc.host_bases.%s and no directory %s", node.ErrInvalidArgs, name, name, dir)
	}
	return dir, nil, nil
}

// Isolate runs the workers of one profile in containers.
type Isolate struct {
	h    *Host
	args Args
}

// Args are the profile's validated args, with the network mode resolved.
func (iso *Isolate) Args() Args { return iso.args }
