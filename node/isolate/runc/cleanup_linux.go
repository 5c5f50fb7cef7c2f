//go:build linux

package runc

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cocaine/cocaine/node/isolate/process"
	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// removeStale removes what a daemon with this state directory left when it was killed:
// its containers (libcontainer kills each one's init, and with it the container's PID
// namespace, and removes its cgroups), the rootfs mounts, and any container cgroup
// named after this host's tag that is still there. The network's leftovers go in the
// shaper's Setup.
func (h *Host) removeStale() {
	ents, _ := os.ReadDir(h.containersDir())
	for _, e := range ents {
		c, err := libcontainer.Load(h.containersDir(), e.Name())
		if err == nil {
			err = destroy(c)
		}
		if err != nil {
			h.log.Warn("removing a stale container failed", "container", e.Name(), "err", err)
		} else {
			h.log.Info("removed a stale container", "container", e.Name())
		}
		os.RemoveAll(filepath.Join(h.containersDir(), e.Name()))
	}
	unmountUnder(h.rootfsDir())
	if ents, err := os.ReadDir(h.rootfsDir()); err == nil {
		for _, e := range ents {
			os.RemoveAll(filepath.Join(h.rootfsDir(), e.Name()))
		}
	}
	for _, dir := range staleGroups(h.opts.CgroupRoot, "c"+h.tag+"-") {
		h.log.Info("removing a stale container cgroup", "cgroup", dir)
		removeGroup(dir)
	}
}

// destroy kills a container left running and removes it: Destroy refuses a running
// one. SIGKILL to its init ends its PID namespace; the init is no child of ours, so its
// state is polled until the kernel has reaped it.
func destroy(c *libcontainer.Container) error {
	c.Signal(unix.SIGKILL)
	for range 200 { // two seconds at most
		if st, err := c.Status(); err != nil || st == libcontainer.Stopped {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c.Destroy()
}

// unmountUnder detaches every mount below dir, deepest first.
func unmountUnder(dir string) {
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return
	}
	sort.Slice(ms, func(i, j int) bool { return len(ms[i].Mountpoint) > len(ms[j].Mountpoint) })
	for _, m := range ms {
		if m.Mountpoint != dir {
			unix.Unmount(m.Mountpoint, unix.MNT_DETACH)
		}
	}
}

// staleGroups are the container groups <root>/<class>/<prefix>* in every hierarchy.
func staleGroups(root, prefix string) []string {
	var out []string
	for _, hier := range process.Hierarchies() {
		m, _ := filepath.Glob(filepath.Join(hier, root, "*", prefix+"*"))
		out = append(out, m...)
	}
	return out
}

// removeGroup kills what is left in a cgroup directory and removes it (and any groups
// below it), retrying while the kernel finishes the kills.
func removeGroup(dir string) {
	subs, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, s := range subs {
		if fi, err := os.Stat(s); err == nil && fi.IsDir() {
			removeGroup(s)
		}
	}
	for range 100 {
		b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(10 * time.Millisecond) // the kernel needs a moment to reap the killed
	}
}
