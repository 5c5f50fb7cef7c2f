package daemon_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// workerCgroup returns the worker's group in a v1 controller, from /proc/<pid>/cgroup.
func workerCgroup(t *testing.T, pid int, controller string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 && f[1] == controller {
			return f[2]
		}
	}
	t.Fatalf("pid %d is in no %s group:\n%s", pid, controller, b)
	return ""
}

func cgroupFile(t *testing.T, controller, group, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, group, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestNodeCPUClasses: each worker runs in its own cgroup under <root>/<class>, with the
// class's CFS quota, shares, cpu.idle and scheduling policy, and the memory and pids
// limits of its profile; the group and the process are gone after the app stops.
func TestNodeCPUClasses(t *testing.T) {
	needCgroups(t)
	cfg := nodeTestConfig(t)
	n := startNode(t, cfg)
	bw := goBinary(t, "./testdata/badworker")
	type want struct {
		files  map[string]string // controller/file -> value
		policy uint32
	}
	for _, tc := range []struct {
		class string
		args  map[string]any
		want  want
	}{
		{"prod", map[string]any{"class": "prod", "cores": 0.5, "memory_limit": 128 << 20, "pids_limit": 100},
			want{map[string]string{"cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000", "cpu/cpu.shares": "512",
				"memory/memory.limit_in_bytes": strconv.Itoa(128 << 20), "memory/memory.memsw.limit_in_bytes": strconv.Itoa(128 << 20),
				"pids/pids.max": "100"}, unix.SCHED_NORMAL}},
		{"batch", map[string]any{"class": "batch", "cores": 0.5},
			want{map[string]string{"cpu/cpu.shares": "512", "cpu/cpu.cfs_quota_us": "-1"}, unix.SCHED_BATCH}},
		{"idle", map[string]any{"class": "idle"},
			want{map[string]string{"cpu/cpu.idle": "1", "cpu/cpu.cfs_quota_us": "-1"}, unix.SCHED_IDLE}},
	} {
		t.Run(tc.class, func(t *testing.T) {
			name := "cls-" + tc.class
			startApp(t, n, appSpec{name: name, binary: bw, env: map[string]any{"MODE": "info"},
				profile: map[string]any{"isolate": map[string]any{"type": "process", "args": tc.args}}})
			app := connect(t, n, name)
			got, err := exchange(ctxT(t), app, "info", nil)
			if err != nil {
				t.Fatal(err)
			}
			pid, err := strconv.Atoi(got)
			if err != nil {
				t.Fatalf("worker pid %q: %v", got, err)
			}
			var uuid string
			for id := range slaves(t, n, name) {
				uuid = id
			}
			group := workerCgroup(t, pid, "cpu")
			if wantGroup := filepath.Join(cfg.Node.CgroupRoot, tc.class, name+"."+uuid); group != wantGroup {
				t.Fatalf("worker in cpu group %s, want %s", group, wantGroup)
			}
			for _, c := range cgroupControllers {
				if g := workerCgroup(t, pid, c); g != group {
					t.Fatalf("worker in %s group %s, want %s", c, g, group)
				}
			}
			for file, v := range tc.want.files {
				c, f, _ := strings.Cut(file, "/")
				if got := cgroupFile(t, c, group, f); got != v {
					t.Errorf("%s = %s, want %s", file, got, v)
				}
			}
			attr, err := unix.SchedGetAttr(pid, 0)
			if err != nil {
				t.Fatal(err)
			}
			if attr.Policy != tc.want.policy {
				t.Errorf("worker's scheduling policy %d, want %d", attr.Policy, tc.want.policy)
			}
			// Every thread of the daemon (this process) keeps the normal policy: the one
			// that forked got its own back.
			tasks, _ := os.ReadDir("/proc/self/task")
			for _, task := range tasks {
				tid, _ := strconv.Atoi(task.Name())
				if a, err := unix.SchedGetAttr(tid, 0); err == nil && a.Policy != unix.SCHED_NORMAL {
					t.Errorf("daemon thread %d has policy %d after spawning a %s worker", tid, a.Policy, tc.class)
				}
			}
			nc := connect(t, n, "node")
			if _, err := call(t, nc, "pause_app", name); err != nil {
				t.Fatal(err)
			}
			eventually(t, callTimeout, func() error {
				if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
					return fmt.Errorf("worker %d still exists: %v", pid, err)
				}
				for _, c := range cgroupControllers {
					if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", c, group)); !errors.Is(err, os.ErrNotExist) {
						return fmt.Errorf("cgroup %s/%s still exists", c, group)
					}
				}
				return nil
			})
		})
	}
}
