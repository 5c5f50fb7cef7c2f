//go:build linux

package daemon_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cocaine/cocaine/internal/daemon"
	"github.com/cocaine/cocaine/node/isolate/runc"
	"github.com/cocaine/cocaine/node/isolate/runc/runctest"
	"github.com/cocaine/cocaine/rpc"
)

// staticBinary builds a package with CGO_ENABLED=0, once: what a container with only
// busybox under it can run.
func staticBinary(t testing.TB, pkg string) string {
	t.Helper()
	return buildOnce(t, "static:"+pkg, pkg, "static-"+filepath.Base(pkg), "CGO_ENABLED=0")
}

// runcConfig is nodeTestConfig with the runc isolate on, its bases holding busybox.
func runcConfig(t *testing.T) daemon.Config {
	t.Helper()
	needCgroups(t)
	cfg := nodeTestConfig(t)
	// Containers' groups are in every hierarchy, not only the four nodeTestConfig sweeps.
	t.Cleanup(func() { runctest.RemoveCgroupRoot(t, cfg.Node.CgroupRoot) })
	cfg.Node.Runc = &runc.Config{BasesDir: runctest.Bases(t)}
	t.Cleanup(func() { // after the daemon stopped: nothing of its containers is left
		ents, _ := os.ReadDir(filepath.Join(cfg.DataDir, "runc", "containers"))
		if len(ents) > 0 {
			t.Errorf("container state left behind: %v", ents)
		}
		b, _ := os.ReadFile("/proc/self/mountinfo")
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, filepath.Join(cfg.DataDir, "runc")) {
				t.Errorf("mount left under %s: %s", filepath.Join(cfg.DataDir, "runc"), l)
			}
		}
	})
	return cfg
}

// TestNodeRunc: the Go echo worker, built static, runs in a runc container on a busybox
// base under the node and answers through the wire; the container's cgroup has the
// profile's class and limits; after pause_app its container and cgroups are gone.
func TestNodeRunc(t *testing.T) {
	cfg := runcConfig(t)
	n := startNode(t, cfg)
	echo := staticBinary(t, "../../examples/echo")
	startApp(t, n, appSpec{name: "boxed", binary: echo, profile: map[string]any{"isolate": map[string]any{
		"type": "runc", "args": map[string]any{"base": "busybox", "class": "prod", "cores": 0.5, "memory_limit": 128 << 20, "pids_limit": 64},
	}}})
	app := connect(t, n, "boxed")
	got, err := exchange(ctxT(t), app, "ping", nil, "hello ", "container")
	if err != nil || got != "hello container" {
		t.Fatalf("ping: %q %v", got, err)
	}
	var uuid string
	for id := range slaves(t, n, "boxed") {
		uuid = id
	}
	groups, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/cpu", cfg.Node.CgroupRoot, "prod", "c*-"+uuid))
	if len(groups) != 1 {
		t.Fatalf("the worker's container group: %v", groups)
	}
	group := strings.TrimPrefix(groups[0], "/sys/fs/cgroup/cpu")
	for file, want := range map[string]string{
		"cpu/cpu.cfs_quota_us": "50000", "memory/memory.limit_in_bytes": strconv.Itoa(128 << 20), "pids/pids.max": "64",
	} {
		c, f, _ := strings.Cut(file, "/")
		if got := cgroupFile(t, c, group, f); got != want {
			t.Errorf("%s = %s, want %s", file, got, want)
		}
	}
	procs := strings.Fields(cgroupFile(t, "pids", group, "cgroup.procs"))
	if len(procs) != 1 {
		t.Fatalf("container processes %v, want the worker alone", procs)
	}
	pid, _ := strconv.Atoi(procs[0])
	// The worker is pid 1 of its own PID namespace, in its own mount namespace.
	if b, _ := os.ReadFile("/proc/" + procs[0] + "/status"); !strings.Contains(string(b), "NSpid:\t"+procs[0]+"\t1\n") {
		t.Errorf("the worker is not pid 1 of its namespace:\n%s", b)
	}
	if self, w := readlink(t, "/proc/self/ns/mnt"), readlink(t, "/proc/"+procs[0]+"/ns/mnt"); self == w {
		t.Errorf("the worker shares the daemon's mount namespace %s (thread's %s)", w, readlink(t, "/proc/thread-self/ns/mnt"))
	}
	nc := connect(t, n, "node")
	if _, err := call(t, nc, "pause_app", "boxed"); err != nil {
		t.Fatal(err)
	}
	eventually(t, callTimeout, func() error {
		if err := syscall.Kill(pid, 0); err == nil {
			return os.ErrExist
		}
		for _, c := range cgroupControllers {
			if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", c, group)); err == nil {
				return os.ErrExist
			}
		}
		return nil
	})
}

func readlink(t *testing.T, p string) string {
	t.Helper()
	s, err := os.Readlink(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestNodeRuncBadProfiles: profiles the runc isolate cannot run fail start_app with a
// precise error in the original's categories; a daemon without node.runc says how to
// turn it on.
func TestNodeRuncBadProfiles(t *testing.T) {
	cfg := runcConfig(t)
	n := startNode(t, cfg)
	echo := staticBinary(t, "../../examples/echo")
	nc := connect(t, n, "node")
	for _, tc := range []struct {
		name string
		args map[string]any
		want string
	}{
		{"nobase", map[string]any{"base": "nothere"}, `base "nothere" is not on this host`},
		{"nonet", map[string]any{"network": "bridge"}, `network "bridge" needs node.runc.network`},
		{"badrate", map[string]any{"net_rate": "fast"}, `net_rate: rate "fast" must be a number with a unit`},
	} {
		upload(t, n, appSpec{name: tc.name, binary: echo, profile: map[string]any{"isolate": map[string]any{"type": "runc", "args": tc.args}}})
		_, err := call(t, nc, "start_app", tc.name, tc.name)
		e := wireError(t, err)
		if e.Category != rpc.CategoryGeneric || e.Code != int(syscall.EINVAL) || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s: [%d:%d] %s, want EINVAL with %q", tc.name, e.Category, e.Code, e.Message, tc.want)
		}
	}

	off := startNode(t, nodeTestConfig(t))
	upload(t, off, appSpec{name: "boxed", binary: echo, profile: map[string]any{"isolate": map[string]any{"type": "runc"}}})
	_, err := call(t, connect(t, off, "node"), "start_app", "boxed", "boxed")
	e := wireError(t, err)
	if e.Category != rpc.CategoryPlugins || e.Code != 1 || !strings.Contains(e.Message, "add a node.runc section to the config") {
		t.Errorf("runc off: [%d:%d] %s", e.Category, e.Code, e.Message)
	}
}
