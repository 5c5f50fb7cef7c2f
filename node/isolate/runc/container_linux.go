//go:build linux

package runc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
	devicesRules "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/node/isolate/process"
	"github.com/cocaine/cocaine/node/netshape"
)

// container is one worker's container, from its rootfs mount to its exit:
//
//	Spawn: rootfs dirs, overlay mount --> network port --> libcontainer Create --> Run
//	         (any failure undoes what was done, in reverse)
//	Wait:  process exit --> OOM count read --> Destroy (init's PID namespace and the
//	       cgroups go) --> port closed --> rootfs unmounted, dirs removed --> untracked
type container struct {
	h    *Host
	id   string
	args Args

	dir    string // <state>/rootfs/<id>: upper, work, merged
	merged string
	cgroup string // the cgroup path, <root>/<class>/<id>
	port   *netshape.Port
	c      *libcontainer.Container
	p      *libcontainer.Process
	pid    int
}

// Spawn implements node.Isolate: the worker runs in a container of its own. ctx
// bounds only the start.
func (iso *Isolate) Spawn(ctx context.Context, spec node.SpawnSpec) (node.Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h := iso.h
	c := &container{h: h, id: h.containerID(spec.UUID), args: iso.args}
	c.dir = filepath.Join(h.rootfsDir(), c.id)
	c.merged = filepath.Join(c.dir, "merged")
	c.cgroup = filepath.Join(h.opts.CgroupRoot, iso.args.Class, c.id)
	if err := h.track(c); err != nil {
		return nil, err
	}
	if err := c.start(spec); err != nil {
		c.release()
		return nil, err
	}
	return c, nil
}

// start builds and starts the container; on error the caller releases what it made.
func (c *container) start(spec node.SpawnSpec) error {
	h := c.h
	endpoint := argValue(spec.Args, "--endpoint")
	if endpoint == "" || !filepath.IsAbs(endpoint) {
		return fmt.Errorf("%w: runc: the worker has no absolute --endpoint to bind into its container", node.ErrResource)
	}
	exe := spec.Executable
	if rel, err := filepath.Rel(spec.Dir, exe); err == nil && !strings.HasPrefix(rel, "..") {
		exe = "/" + rel // the app's files are the rootfs's top layer
	}
	lower, hostDirs, err := h.base(c.args.Base)
	if err != nil {
		return err
	}
	for _, d := range []string{spec.Dir, lower, c.dir} {
		if strings.ContainsAny(d, ",:\\") {
			return fmt.Errorf("%w: runc: %q cannot be an overlay layer: its path has ',', ':' or '\\'", node.ErrResource, d)
		}
	}
	for _, d := range []string{"upper", "work", "merged"} {
		if err := os.MkdirAll(filepath.Join(c.dir, d), 0o700); err != nil {
			return fmt.Errorf("%w: runc: %v", node.ErrResource, err)
		}
	}
	// The app's files over the base; the upper directory only ever gets the mount
	// points libcontainer makes, since the rootfs is remounted read-only before the
	// worker runs.
	opts := fmt.Sprintf("lowerdir=%s:%s,upperdir=%s,workdir=%s", spec.Dir, lower, filepath.Join(c.dir, "upper"), filepath.Join(c.dir, "work"))
	if err := unix.Mount("overlay", c.merged, "overlay", unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("%w: runc: overlay rootfs of %s: %v", node.ErrResource, c.id, err)
	}
	netNS := configs.Namespace{Type: configs.NEWNET}
	var networks []*configs.Network
	if c.args.Network == NetworkBridge {
		cl := netshape.Class{Prod: c.args.Class == process.ClassProd, Rate: c.args.NetRate, Ceil: c.args.NetCeil}
		if c.port, err = h.shaper.Attach(c.id, cl); err != nil {
			return fmt.Errorf("%w: runc: %w", node.ErrResource, err)
		}
		netNS.Path = c.port.Netns()
	} else {
		networks = []*configs.Network{{Type: "loopback", Address: "127.0.0.1/0", Gateway: "localhost"}}
	}
	cfg := c.config(spec.App, endpoint, hostDirs, netNS, networks)
	if c.c, err = libcontainer.Create(h.containersDir(), c.id, cfg); err != nil {
		return fmt.Errorf("%w: runc: create container %s: %v", node.ErrResource, c.id, err)
	}
	env := append([]string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/tmp"}, spec.AppEnv...)
	c.p = &libcontainer.Process{
		Args: append([]string{exe}, spec.Args...),
		Env:  env,
		Cwd:  "/",
		// One writer for both: exec gives them one pipe, as the process isolate does.
		Stdout: spec.Output, Stderr: spec.Output,
		Init: true,
	}
	if err := c.c.Run(c.p); err != nil {
		c.p = nil
		return fmt.Errorf("%w: runc: start %s in container %s: %v", node.ErrResource, exe, c.id, err)
	}
	if c.pid, err = c.p.Pid(); err != nil {
		c.Kill()
		c.p.Wait()
		c.p = nil
		return fmt.Errorf("%w: runc: container %s: %v", node.ErrResource, c.id, err)
	}
	return nil
}

// config is the container's libcontainer configuration.
func (c *container) config(app, endpoint string, hostDirs []string, netNS configs.Namespace, networks []*configs.Network) *configs.Config {
	a := c.args
	cpu := a.CPU()
	res := &cgroups.Resources{CpuShares: cpu.Shares, CpuQuota: cpu.Quota, CpuPeriod: cpu.Period}
	if cpu.Idle {
		one := int64(1)
		res.CPUIdle = &one
	}
	if a.MemoryLimit > 0 {
		res.Memory = a.MemoryLimit
		if c.h.memsw {
			res.MemorySwap = a.MemoryLimit // over its limit a worker is killed, not swapped
		}
	}
	if a.PidsLimit > 0 {
		l := a.PidsLimit
		res.PidsLimit = &l
	}
	var devs []*devicesRules.Device
	for _, d := range specconv.AllowedDevices {
		res.Devices = append(res.Devices, &d.Rule)
		if d.Path != "" {
			devs = append(devs, d)
		}
	}
	const (
		nosuid = unix.MS_NOSUID
		noexec = unix.MS_NOEXEC
		nodev  = unix.MS_NODEV
	)
	mounts := []*configs.Mount{
		{Source: "proc", Destination: "/proc", Device: "proc", Flags: nosuid | noexec | nodev},
		{Source: "tmpfs", Destination: "/dev", Device: "tmpfs", Flags: nosuid | unix.MS_STRICTATIME, Data: "mode=755,size=65536k"},
		{Source: "devpts", Destination: "/dev/pts", Device: "devpts", Flags: nosuid | noexec, Data: "newinstance,ptmxmode=0666,mode=0620"},
		{Source: "shm", Destination: "/dev/shm", Device: "tmpfs", Flags: nosuid | noexec | nodev, Data: "mode=1777,size=65536k"},
		{Source: "mqueue", Destination: "/dev/mqueue", Device: "mqueue", Flags: nosuid | noexec | nodev},
		{Source: "sysfs", Destination: "/sys", Device: "sysfs", Flags: nosuid | noexec | nodev | unix.MS_RDONLY},
		// The scratch directory: the one writable place, counted against the memory limit.
		{Source: "tmpfs", Destination: "/tmp", Device: "tmpfs", Flags: nosuid | nodev, Data: "mode=1777,size=" + strconv.FormatInt(a.ScratchSize, 10)},
		// The worker socket, at the path the worker is given.
		{Source: endpoint, Destination: endpoint, Device: "bind", Flags: unix.MS_BIND},
	}
	for _, d := range hostDirs {
		mounts = append(mounts, &configs.Mount{Source: d, Destination: d, Device: "bind", Flags: unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY | nosuid | nodev})
	}
	cfg := &configs.Config{
		Rootfs:     c.merged,
		Readonlyfs: true,
		Hostname:   hostname(app),
		Namespaces: configs.Namespaces{
			{Type: configs.NEWNS}, {Type: configs.NEWUTS}, {Type: configs.NEWIPC}, {Type: configs.NEWPID}, netNS,
		},
		Networks: networks,
		// Every set empty: the worker has no capability at all, even as uid 0.
		Capabilities:    &configs.Capabilities{},
		NoNewPrivileges: true,
		NoNewKeyring:    true,
		Mounts:          mounts,
		Devices:         devs,
		Cgroups:         &cgroups.Cgroup{Path: c.cgroup, Resources: res}, // absolute: not below the daemon's own group
		MaskPaths: []string{
			"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
			"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
		},
		ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		Version:       specs.Version,
	}
	if cpu.Policy != "" {
		cfg.Scheduler = &configs.Scheduler{Policy: specs.LinuxSchedulerPolicy(cpu.Policy)}
	}
	return cfg
}

// hostname is the container's host name: the app's name, cut to what UTS allows.
func hostname(app string) string {
	var b strings.Builder
	for _, r := range app {
		if b.Len() >= 63 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	if b.Len() == 0 {
		return "app"
	}
	return b.String()
}

// argValue is the value after flag in args.
func argValue(args []string, flag string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}

// Pid implements node.Process: the worker's pid on the host.
func (c *container) Pid() int { return c.pid }

// Cgroup is the container's cgroup path.
func (c *container) Cgroup() string { return c.cgroup }

// Addr is the container's address on the bridge, "" without one.
func (c *container) Addr() string {
	if c.port == nil {
		return ""
	}
	return c.port.Addr().String()
}

// Kill implements node.Process. SIGKILL to the container's init ends every process of
// its PID namespace with it.
func (c *container) Kill() {
	if c.c == nil {
		return
	}
	c.c.Signal(unix.SIGKILL)
}

// Wait implements node.Process: the exit status, then the container and everything
// made for it are removed.
func (c *container) Wait() error {
	if c.p == nil {
		return errors.New("runc: the container never started")
	}
	_, err := c.p.Wait()
	oom := c.oomKilled()
	c.release()
	return process.ExitReason(err, oom, c.args.MemoryLimit)
}

// oomKilled reads the memory controller's OOM kill count of the container's group.
func (c *container) oomKilled() bool {
	if cgroups.IsCgroup2UnifiedMode() {
		return process.OOMKilled(filepath.Join("/sys/fs/cgroup", c.cgroup, "memory.events"))
	}
	return process.OOMKilled(filepath.Join(process.ControllerDir("memory", c.cgroup), "memory.oom_control"))
}

// release removes everything the container had, in reverse order of start, and
// forgets it. Errors are logged: the worker is gone either way.
func (c *container) release() {
	log := c.h.log.With("container", c.id)
	if c.c != nil {
		if err := c.c.Destroy(); err != nil {
			log.Error("destroying a container failed", "err", err)
		}
	}
	if c.port != nil {
		if err := c.port.Close(); err != nil {
			log.Error("removing a container's network failed", "err", err)
		}
	}
	if err := unix.Unmount(c.merged, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		log.Error("unmounting a container's rootfs failed", "err", err)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		log.Error("removing a container's rootfs failed", "err", err)
	}
	c.h.untrack(c)
}
