//go:build linux

package runc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// check is one thing the kernel (or the daemon's privileges) must provide. Its error
// says exactly what is missing.
type check struct {
	name string
	fn   func(h *Host) error
}

// kernelChecks run before the first container, so that a host without what containers
// need refuses the isolate at once with the reason, rather than failing each spawn.
var kernelChecks = []check{
	{"privileges", func(*Host) error {
		if uid := os.Geteuid(); uid != 0 {
			return fmt.Errorf("containers need root (effective uid 0), the daemon runs as uid %d", uid)
		}
		return nil
	}},
	{"namespaces", func(*Host) error {
		var missing []string
		for _, ns := range []struct{ file, option string }{
			{"mnt", "CONFIG_NAMESPACES"}, {"pid", "CONFIG_PID_NS"}, {"ipc", "CONFIG_IPC_NS"},
			{"uts", "CONFIG_UTS_NS"}, {"net", "CONFIG_NET_NS"},
		} {
			if _, err := os.Stat("/proc/self/ns/" + ns.file); err != nil {
				missing = append(missing, fmt.Sprintf("%s namespaces (%s)", ns.file, ns.option))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("no %v", missing)
		}
		return nil
	}},
	{"overlayfs", checkOverlay},
	{"cgroups", checkCgroups},
}

// checkOverlay mounts a read-only overlay of two empty directories in the state
// directory: the rootfs of every container is one.
func checkOverlay(h *Host) error {
	dir, err := os.MkdirTemp(h.cfg.StateDir, "probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	a, b, m := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "m")
	for _, d := range []string{a, b, m} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	if err := unix.Mount("overlay", m, "overlay", unix.MS_RDONLY, "lowerdir="+a+":"+b); err != nil {
		return fmt.Errorf("cannot mount an overlay filesystem (CONFIG_OVERLAY_FS) under %s: %v", h.cfg.StateDir, err)
	}
	unix.Unmount(m, unix.MNT_DETACH)
	return nil
}

// v1Controllers are the hierarchies a container's group is made in and limited by.
var v1Controllers = []string{"cpu", "cpuacct", "memory", "pids", "devices", "freezer"}

// checkCgroups finds the controllers, cpu.idle for the idle class, and whether memory
// limits can cover swap.
func checkCgroups(h *Host) error {
	if cgroups.IsCgroup2UnifiedMode() {
		b, err := os.ReadFile("/sys/fs/cgroup/cgroup.subtree_control")
		if err != nil {
			return fmt.Errorf("cgroup v2: %v", err)
		}
		var missing []string
		for _, c := range []string{"cpu", "memory", "pids"} {
			if !hasWord(string(b), c) {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("cgroup v2 controllers %v are not enabled in /sys/fs/cgroup/cgroup.subtree_control", missing)
		}
		h.memsw = true // memory.swap.max: libcontainer converts memory+swap
		return h.checkIdle(filepath.Join("/sys/fs/cgroup", h.opts.CgroupRoot))
	}
	var missing []string
	for _, c := range v1Controllers {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", c, "cgroup.procs")); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("cgroup v1 controllers %v are not mounted under /sys/fs/cgroup", missing)
	}
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	h.memsw = err == nil
	return h.checkIdle(filepath.Join("/sys/fs/cgroup/cpu", h.opts.CgroupRoot))
}

// checkIdle looks for cpu.idle in the node's own group (the root group has none),
// creating the group, which the process isolate's workers share.
func (h *Host) checkIdle(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cgroup %s: %v", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cpu.idle")); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("the cpu controller has no cpu.idle (Linux 5.15 or later, CONFIG_FAIR_GROUP_SCHED), which the idle class needs")
	}
	return nil
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}
