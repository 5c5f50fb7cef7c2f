//go:build linux

package runc

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/node/isolate/process"
	"github.com/cocaine/cocaine/node/isolate/runc/runctest"
)

// TestContainer: a busybox worker runs in a container of its own: its output is
// captured, it sees only its own processes, cannot write outside /tmp, has no
// capabilities, no new privileges, only a loopback interface, the app's environment
// and not the daemon's, its limits and class in its cgroup files; killed, it is
// reported as such and everything made for it is gone.
func TestContainer(t *testing.T) {
	h := testHost(t, Config{}, nil)
	iso := isolate(t, h, map[string]any{"base": "busybox", "class": "prod", "cores": 0.5,
		"memory_limit": uint64(64 << 20), "pids_limit": uint64(32)})
	os.Setenv("COCAINE_DAEMON_SECRET", "x")
	defer os.Unsetenv("COCAINE_DAEMON_SECRET")
	script := `echo out; echo err >&2
echo pid1 $(cat /proc/1/comm)
echo procs $(ls /proc | grep -c '^[0-9]')
touch /x 2>/dev/null && echo wrote-root || echo root-read-only
touch /bin/x 2>/dev/null && echo wrote-bin || echo bin-read-only
touch /tmp/x && echo tmp-writable
grep CapEff /proc/self/status
grep NoNewPrivs /proc/self/status
echo ifaces $(grep -c : /proc/net/dev)
echo host $(hostname)
echo env $GREETING ${COCAINE_DAEMON_SECRET:-none}
echo ready
exec sleep 600`
	p, out := spawn(t, iso, "box-app", script)
	out.wait(t, "ready")
	for _, want := range []string{"out", "err", "pid1 sh", "root-read-only", "bin-read-only", "tmp-writable",
		"CapEff:\t0000000000000000", "NoNewPrivs:\t1", "ifaces 1", "host box-app", "env hi none"} {
		if !strings.Contains("\n"+out.text()+"\n", "\n"+want+"\n") {
			t.Errorf("no line %q in the output:\n%s", want, out.text())
		}
	}
	// The host runs hundreds of processes; the container sees sh, the subshell, ls, grep.
	for _, l := range strings.Split(out.text(), "\n") {
		if n, ok := strings.CutPrefix(l, "procs "); ok {
			if v, _ := strconv.Atoi(n); v < 1 || v > 4 {
				t.Errorf("the container sees %s processes", n)
			}
		}
	}
	c := p.container
	group := c.Cgroup()
	if want := filepath.Join(h.opts.CgroupRoot, "prod", c.id); group != want {
		t.Fatalf("cgroup %s, want %s", group, want)
	}
	for file, want := range map[string]string{
		"cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000", "cpu/cpu.shares": "512",
		"memory/memory.limit_in_bytes": strconv.Itoa(64 << 20), "pids/pids.max": "32",
	} {
		ctl, f, _ := strings.Cut(file, "/")
		if got := readFile(t, filepath.Join("/sys/fs/cgroup", ctl, group, f)); got != want {
			t.Errorf("%s = %s, want %s", file, got, want)
		}
	}
	if h.memsw {
		if got := readFile(t, filepath.Join("/sys/fs/cgroup/memory", group, "memory.memsw.limit_in_bytes")); got != strconv.Itoa(64<<20) {
			t.Errorf("memory.memsw.limit_in_bytes = %s", got)
		}
	}
	if procs := readFile(t, filepath.Join("/sys/fs/cgroup/pids", group, "cgroup.procs")); procs != strconv.Itoa(p.Pid()) {
		t.Errorf("cgroup.procs = %q, want the worker %d alone", procs, p.Pid())
	}
	p.Kill()
	err := p.wait(t)
	if err == nil || !strings.Contains(err.Error(), "killed by signal 9") {
		t.Fatalf("exit: %v, want killed by signal 9", err)
	}
	assertGone(t, h, c)
}

// assertGone checks that a container left nothing: cgroups, rootfs, state.
func assertGone(t *testing.T, h *Host, c *container) {
	t.Helper()
	for _, hier := range process.Hierarchies() {
		if _, err := os.Stat(filepath.Join(hier, c.cgroup)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left in %s", c.cgroup, hier)
		}
	}
	for _, dir := range []string{c.dir, filepath.Join(h.containersDir(), c.id)} {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind", dir)
		}
	}
	if err := syscall.Kill(c.pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("worker %d still exists", c.pid)
	}
}

// TestContainerExit: exit statuses and OOM kills are reported.
func TestContainerExit(t *testing.T) {
	h := testHost(t, Config{}, nil)
	iso := isolate(t, h, map[string]any{"base": "busybox", "memory_limit": uint64(64 << 20)})
	for _, tc := range []struct{ script, want string }{
		{"exit 0", ""},
		{"exit 3", "exited with status 3"},
		// dd's buffer alone is twice the limit.
		{"exec dd if=/dev/zero of=/dev/null bs=128M count=1", "was killed by the OOM killer (memory limit 67108864 bytes)"},
	} {
		p, out := spawn(t, iso, "exit-app", tc.script)
		err := p.wait(t)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%q: %q, want %q (output: %s)", tc.script, got, tc.want, out.text())
		}
		assertGone(t, h, p.container)
	}
}

// TestClasses: batch and idle containers get their shares, cpu.idle and scheduling
// policy through the container's cgroup and init.
func TestClasses(t *testing.T) {
	h := testHost(t, Config{}, nil)
	for _, tc := range []struct {
		class  string
		files  map[string]string
		policy uint32
	}{
		{"batch", map[string]string{"cpu.shares": "512", "cpu.cfs_quota_us": "-1", "cpu.idle": "0"}, unix.SCHED_BATCH},
		{"idle", map[string]string{"cpu.idle": "1", "cpu.cfs_quota_us": "-1"}, unix.SCHED_IDLE},
	} {
		t.Run(tc.class, func(t *testing.T) {
			iso := isolate(t, h, map[string]any{"base": "busybox", "class": tc.class, "cores": 0.5})
			p, out := spawn(t, iso, "cls", "echo ready; exec sleep 600")
			out.wait(t, "ready")
			c := p.container
			for f, want := range tc.files {
				if got := readFile(t, filepath.Join("/sys/fs/cgroup/cpu", c.cgroup, f)); got != want {
					t.Errorf("%s = %s, want %s", f, got, want)
				}
			}
			attr, err := unix.SchedGetAttr(p.Pid(), 0)
			if err != nil {
				t.Fatal(err)
			}
			if attr.Policy != tc.policy {
				t.Errorf("policy %d, want %d", attr.Policy, tc.policy)
			}
			p.Kill()
			p.wait(t)
			assertGone(t, h, c)
		})
	}
}

// TestRefused: a host without a feature refuses every runc profile, naming it.
func TestRefused(t *testing.T) {
	h := testHost(t, Config{}, func(h *Host) {
		h.checks = append(h.checks, check{"overlayfs", func(*Host) error {
			return errors.New("cannot mount an overlay filesystem (CONFIG_OVERLAY_FS)")
		}})
	})
	_, err := h.Factory().New(map[string]any{})
	want := "the runc isolate cannot run on this host: this host lacks what containers need: overlayfs: cannot mount an overlay filesystem (CONFIG_OVERLAY_FS)"
	if !errors.Is(err, node.ErrUnknownIsolate) || !strings.Contains(err.Error(), want) {
		t.Fatalf("New: %v, want %q", err, want)
	}
}

// TestBadProfiles: profile errors name the problem.
func TestBadProfiles(t *testing.T) {
	h := testHost(t, Config{}, nil)
	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"base": "nothere"}, `base "nothere" is not on this host`},
		{map[string]any{"network": "bridge"}, `network "bridge" needs node.runc.network`},
		{map[string]any{"class": "batch", "net_rate": "1mbit"}, "net_rate and net_ceil are for prod containers"},
		{map[string]any{"bogus": 1.0}, `unknown argument "bogus"`},
	} {
		_, err := h.Factory().New(tc.args)
		if !errors.Is(err, node.ErrInvalidArgs) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestHostBase: a base made of host directories binds them read-only at their paths.
func TestHostBase(t *testing.T) {
	needRoot(t)
	// Outside /tmp, which the container mounts itself.
	dir, err := os.MkdirTemp("/var/tmp", "cocaine-hostbase-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bases := runctest.Bases(t)
	b, err := os.ReadFile(filepath.Join(bases, "busybox", "bin", "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	h := testHost(t, Config{BasesDir: bases, HostBases: map[string][]string{"hostview": {dir}}}, nil)
	iso := isolate(t, h, map[string]any{"base": "hostview"})
	p, out := spawnExe(t, iso, "hostview", filepath.Join(dir, "busybox"), []string{"sh", "-c",
		"echo seen $(" + dir + "/busybox ls " + dir + "); " + dir + "/busybox touch " + dir + "/x 2>/dev/null || echo read-only; echo ready; exec " + dir + "/busybox sleep 600"})
	out.wait(t, "ready")
	for _, want := range []string{"seen busybox", "read-only"} {
		if !strings.Contains("\n"+out.text()+"\n", "\n"+want+"\n") {
			t.Errorf("no line %q in the output:\n%s", want, out.text())
		}
	}
	p.Kill()
	p.wait(t)
}
