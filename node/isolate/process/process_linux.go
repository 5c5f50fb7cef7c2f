//go:build linux

package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cocaine/cocaine/node"
)

// controllers are the v1 hierarchies a worker's group is created in.
var controllers = []cgroup1.Name{cgroup1.Cpu, cgroup1.Cpuacct, cgroup1.Memory, cgroup1.Pids}

// host is what every Isolate of one node shares: whether cgroups can be used.
type host struct {
	opts    Options
	enabled bool
	once    sync.Once
}

func newHost(opts Options) *host {
	h := &host{opts: opts}
	switch {
	case os.Geteuid() != 0:
		opts.Log.Info("not root: workers run as plain processes, without cgroups or CPU classes")
	case cgroups.Mode() == cgroups.Unified:
		opts.Log.Info("cgroup v2 only host: workers run as plain processes (the v1 hierarchies are not mounted)")
	case opts.Root == "" || !filepath.IsAbs(opts.Root):
		opts.Log.Info("no absolute cgroup root configured: workers run as plain processes", "root", opts.Root)
	default:
		h.enabled = true
	}
	return h
}

// hierarchy picks the controllers we use out of the mounted ones.
func hierarchy() ([]cgroup1.Subsystem, error) {
	all, err := cgroup1.Default()
	if err != nil {
		return nil, err
	}
	var out []cgroup1.Subsystem
	for _, s := range all {
		for _, c := range controllers {
			if s.Name() == c {
				out = append(out, s)
			}
		}
	}
	if len(out) != len(controllers) {
		return nil, fmt.Errorf("process: need the %v cgroup v1 controllers, found %d of them", controllers, len(out))
	}
	return out, nil
}

// Path returns where a worker's group lives below root, for tests and tools.
func Path(root, class, app, uuid string) string {
	return filepath.Join(root, class, cgroupName(app, uuid))
}

// ControllerDir is the directory of a cgroup path in one v1 controller.
func ControllerDir(controller, path string) string {
	return filepath.Join("/sys/fs/cgroup", controller, path)
}

func (a Args) resources() *specs.LinuxResources {
	r := &specs.LinuxResources{}
	c := a.CPU()
	cpu := &specs.LinuxCPU{}
	if c.Shares > 0 {
		cpu.Shares = &c.Shares
	}
	if c.Quota > 0 {
		cpu.Quota, cpu.Period = &c.Quota, &c.Period
	}
	r.CPU = cpu
	if a.MemoryLimit > 0 {
		l := a.MemoryLimit
		r.Memory = &specs.LinuxMemory{Limit: &l}
	}
	if a.PidsLimit > 0 {
		l := a.PidsLimit
		r.Pids = &specs.LinuxPids{Limit: &l}
	}
	return r
}

// Spawn implements node.Isolate.
func (iso *Isolate) Spawn(ctx context.Context, spec node.SpawnSpec) (node.Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cmd := command(spec)
	p := &proc{cmd: cmd, log: iso.host.opts.Log, limit: iso.args.MemoryLimit}
	var cg cgroup1.Cgroup
	if iso.host.enabled {
		var err error
		if cg, p.path, err = iso.group(spec); err != nil {
			return nil, err
		}
		p.cg = cg
	}
	if err := start(cmd, iso.args.Class); err != nil {
		p.removeGroup()
		return nil, fmt.Errorf("process: start %s: %w", spec.Executable, err)
	}
	if cg != nil {
		// The process has run for microseconds outside its group; Go's exec cannot
		// fork into a v1 cgroup. cgroup.procs moves every thread it has by now.
		if err := cg.Add(cgroup1.Process{Pid: cmd.Process.Pid}); err != nil {
			killGroup(cmd.Process.Pid)
			cmd.Wait()
			p.removeGroup()
			return nil, fmt.Errorf("process: add worker %d to %s: %w", cmd.Process.Pid, p.path, err)
		}
	}
	return p, nil
}

// group creates the worker's cgroup under its class, with the class's settings.
func (iso *Isolate) group(spec node.SpawnSpec) (cgroup1.Cgroup, string, error) {
	h := iso.host
	classPath := filepath.Join(h.opts.Root, iso.args.Class)
	if _, err := cgroup1.New(cgroup1.StaticPath(classPath), &specs.LinuxResources{}, cgroup1.WithHiearchy(hierarchy)); err != nil {
		return nil, "", fmt.Errorf("%w: process: class group %s: %v", node.ErrResource, classPath, err)
	}
	path := Path(h.opts.Root, iso.args.Class, spec.App, spec.UUID)
	cg, err := cgroup1.New(cgroup1.StaticPath(path), iso.args.resources(), cgroup1.WithHiearchy(hierarchy))
	if err != nil {
		return nil, "", fmt.Errorf("%w: process: cgroup %s: %v", node.ErrResource, path, err)
	}
	if l := iso.args.MemoryLimit; l > 0 {
		// Memory and swap together: a worker over its limit must be killed, not swapped
		// out. Hosts without swap accounting have no such file, and need none.
		f := filepath.Join(ControllerDir("memory", path), "memory.memsw.limit_in_bytes")
		if err := os.WriteFile(f, []byte(strconv.FormatInt(l, 10)), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			cg.Delete()
			return nil, "", fmt.Errorf("%w: process: %s: %v", node.ErrResource, f, err)
		}
	}
	if iso.args.Class == ClassIdle {
		// containerd's v1 code ignores LinuxCPU.Idle: write it ourselves.
		if err := os.WriteFile(filepath.Join(ControllerDir("cpu", path), "cpu.idle"), []byte("1"), 0); err != nil {
			cg.Delete()
			return nil, "", fmt.Errorf("%w: process: cpu.idle of %s: %v", node.ErrResource, path, err)
		}
	}
	return cg, path, nil
}

// start starts cmd with the class's scheduling policy. The policy is set on a locked OS
// thread just before the fork, so the child has it from its first instruction, and the
// thread gets its own policy back before it serves other goroutines.
func start(cmd *exec.Cmd, class string) error {
	policy := -1
	switch class {
	case ClassBatch:
		policy = unix.SCHED_BATCH
	case ClassIdle:
		policy = unix.SCHED_IDLE
	}
	if policy < 0 {
		return cmd.Start()
	}
	runtime.LockOSThread()
	old, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("sched_getattr: %w", err)
	}
	if err := unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: uint32(policy)}, 0); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("sched_setattr: %w", err)
	}
	startErr := cmd.Start()
	if err := unix.SchedSetAttr(0, old, 0); err != nil {
		// Keep the thread locked: it dies with this goroutine instead of running others
		// with the worker's policy.
		return errors.Join(startErr, fmt.Errorf("restoring the thread's policy: %w", err))
	}
	runtime.UnlockOSThread()
	return startErr
}

// proc is one started worker.
type proc struct {
	cmd   *exec.Cmd
	cg    cgroup1.Cgroup // nil without cgroups
	path  string
	log   *slog.Logger
	limit int64
}

func (p *proc) Pid() int { return p.cmd.Process.Pid }

// Kill implements node.Process: the process group, then everything left in the cgroup.
func (p *proc) Kill() {
	killGroup(p.cmd.Process.Pid)
	p.cmd.Process.Kill()
	p.killGroupMembers()
}

func (p *proc) killGroupMembers() {
	if p.cg == nil {
		return
	}
	for _, c := range []cgroup1.Name{cgroup1.Pids, cgroup1.Memory} {
		procs, err := p.cg.Processes(c, true)
		if err != nil {
			continue
		}
		for _, q := range procs {
			syscall.Kill(q.Pid, syscall.SIGKILL)
		}
	}
}

// Wait implements node.Process.
func (p *proc) Wait() error {
	err := p.cmd.Wait()
	oom := p.oomKilled()
	p.removeGroup()
	return ExitReason(err, oom, p.limit)
}

// oomKilled reads the memory controller's OOM kill counter of the worker's group.
func (p *proc) oomKilled() bool {
	if p.cg == nil {
		return false
	}
	return OOMKilled(filepath.Join(ControllerDir("memory", p.path), "memory.oom_control"))
}

// OOMKilled reports whether a cgroup's memory counters (v1 memory.oom_control, v2
// memory.events; both count "oom_kill") say the OOM killer ended a process of the group.
// An unreadable file counts as no kill.
func OOMKilled(file string) bool {
	b, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "oom_kill" {
			n, _ := strconv.Atoi(f[1])
			return n > 0
		}
	}
	return false
}

// removeGroup kills what is left in the worker's group and removes it. The kernel
// refuses to remove a group until its last task is gone, which takes a moment after
// SIGKILL, so it retries for a bounded time.
func (p *proc) removeGroup() {
	if p.cg == nil {
		return
	}
	retry := time.NewTicker(10 * time.Millisecond)
	defer retry.Stop()
	var err error
	for range 200 { // two seconds at most
		p.killGroupMembers()
		if err = p.cg.Delete(); err == nil || errors.Is(err, cgroup1.ErrCgroupDeleted) {
			return
		}
		<-retry.C
	}
	p.log.Error("removing a worker's cgroup failed", "cgroup", p.path, "err", err)
}
