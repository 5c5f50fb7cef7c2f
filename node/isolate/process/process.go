// Package process is the node's process isolate: each worker is a plain process, and on
// Linux (as root, with cgroup v1 controllers mounted) it runs in its own cgroup under the
// node's class hierarchy <root>/<class>/<app>.<uuid>, with the CPU class of its profile:
//
//	prod   CFS quota for its cores (cpu.cfs_quota_us = cores × period), normal policy
//	batch  cpu.shares proportional to its cores, SCHED_BATCH
//	idle   the smallest cpu.shares, cpu.idle = 1, SCHED_IDLE
//
// plus memory and pids limits. A worker killed by the OOM killer is reported as such.
// The cgroup is removed when the worker has exited, after every process left in it is
// killed. Without root or cgroups it runs plain processes and says so once in the log.
//
// Profile isolate args (all optional):
//
//	{"class": "prod"|"batch"|"idle", "cores": 1.5, "memory_limit": 268435456, "pids_limit": 64}
package process

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/cocaine/cocaine/node"
)

// CPU classes.
const (
	ClassProd  = "prod"
	ClassBatch = "batch"
	ClassIdle  = "idle"
)

// Options configure the isolate.
type Options struct {
	// Root is the node's cgroup hierarchy, an absolute cgroup path ("/cocaine"). The
	// class groups are created below it.
	Root string
	// Log gets the isolate's events; nil discards them.
	Log *slog.Logger
}

// Args are a profile's isolate args, validated.
type Args struct {
	Class       string
	Cores       float64 // 0: no CPU limit for prod; shares of one core for batch
	MemoryLimit int64   // bytes; 0: none
	PidsLimit   int64   // 0: none
}

// ParseArgs validates isolate args. Errors wrap node.ErrInvalidArgs and name every
// problem.
func ParseArgs(m map[string]any) (Args, error) {
	a := Args{Class: ClassProd}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", node.ErrInvalidArgs, fmt.Sprintf(format, args...)))
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := m[k]
		switch k {
		case "class":
			s, ok := v.(string)
			if !ok || (s != ClassProd && s != ClassBatch && s != ClassIdle) {
				bad("class must be %q, %q or %q, got %v", ClassProd, ClassBatch, ClassIdle, v)
				continue
			}
			a.Class = s
		case "cores":
			f, ok := node.Number(v)
			if !ok || f <= 0 || f > 4096 || math.IsNaN(f) {
				bad("cores must be a number of cores above 0, got %v", v)
				continue
			}
			a.Cores = f
		case "memory_limit":
			f, ok := node.Number(v)
			if !ok || f < 1<<20 || f != math.Trunc(f) || f > 1<<50 {
				bad("memory_limit must be a whole number of bytes, at least 1 MiB, got %v", v)
				continue
			}
			a.MemoryLimit = int64(f)
		case "pids_limit":
			f, ok := node.Number(v)
			if !ok || f < 1 || f != math.Trunc(f) || f > 1<<22 {
				bad("pids_limit must be a positive whole number, got %v", v)
				continue
			}
			a.PidsLimit = int64(f)
		case "spool", "kill_timeout":
			// legacy_process args: the node spools and kills itself
		default:
			bad("unknown argument %q (known: class, cores, memory_limit, pids_limit)", k)
		}
	}
	return a, errors.Join(errs...)
}

// Factories returns the isolate under the names profiles use: "process" (the default)
// and "legacy_process" (the original's fork/exec isolate).
func Factories(opts Options) []node.IsolateFactory {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	opts.Log = opts.Log.With("component", "isolate")
	h := newHost(opts)
	f := func(m map[string]any) (node.Isolate, error) {
		a, err := ParseArgs(m)
		if err != nil {
			return nil, err
		}
		return &Isolate{host: h, args: a}, nil
	}
	return []node.IsolateFactory{{Type: "process", New: f}, {Type: "legacy_process", New: f}}
}

// Isolate spawns workers with one profile's args.
type Isolate struct {
	host *host
	args Args
}

// cfsPeriod is the CFS period prod quotas are expressed in (the kernel's default).
const cfsPeriod = 100_000

// CPU is what a worker's class and cores come to in its cgroup and its scheduling
// policy; the runc isolate applies the same through the container's cgroup.
type CPU struct {
	Shares uint64 // cpu.shares
	Quota  int64  // cpu.cfs_quota_us; 0: no quota
	Period uint64 // cpu.cfs_period_us, with Quota
	Idle   bool   // cpu.idle = 1
	Policy string // "" (SCHED_NORMAL), "SCHED_BATCH" or "SCHED_IDLE"
}

// CPU returns the settings of a's class (the package doc's table). A prod worker
// without cores has no CPU limit.
func (a Args) CPU() CPU {
	switch a.Class {
	case ClassBatch:
		// shares proportional to its minimum cores
		return CPU{Shares: uint64(max(2, 1024*max(a.Cores, 0.25))), Policy: "SCHED_BATCH"}
	case ClassIdle:
		return CPU{Shares: 2, Idle: true, Policy: "SCHED_IDLE"}
	}
	if a.Cores > 0 {
		return CPU{Shares: uint64(max(2, a.Cores*1024)), Quota: int64(a.Cores * cfsPeriod), Period: cfsPeriod}
	}
	return CPU{}
}

// command builds the exec.Cmd common to every platform.
func command(spec node.SpawnSpec) *exec.Cmd {
	cmd := exec.Command(spec.Executable, spec.Args...)
	cmd.Dir = spec.Dir
	cmd.Env = spec.Env
	cmd.Stdout = spec.Output
	cmd.Stderr = spec.Output // the same writer: exec gives both one pipe
	// Its own process group, so Kill reaches what it forked even without cgroups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A grandchild that keeps the pipe open must not keep Wait from returning.
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// ExitReason says why a process ended, from what exec.Cmd.Wait returned and whether
// the OOM killer ended it; nil for status 0.
func ExitReason(err error, oom bool, limit int64) error {
	if oom {
		return fmt.Errorf("was killed by the OOM killer (memory limit %d bytes)", limit)
	}
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
			if ws.Signaled() {
				return fmt.Errorf("was killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
			}
			return fmt.Errorf("exited with status %d", ws.ExitStatus())
		}
	}
	return fmt.Errorf("ended: %v", err)
}

// killGroup sends SIGKILL to the process group of pid.
func killGroup(pid int) {
	if pid > 0 {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// cgroupName is the worker's group below its class: <app>.<uuid>, with characters a path
// element cannot hold replaced.
func cgroupName(app, uuid string) string {
	r := strings.NewReplacer("/", "_", "\x00", "_")
	name := r.Replace(app) + "." + r.Replace(uuid)
	if name == "." || name == ".." {
		name = "_"
	}
	return name
}
