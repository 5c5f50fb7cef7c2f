// Package runctest holds what tests of containers need: a bases directory with a
// busybox base layer made from Debian's busybox-static, and the removal by name of a
// test's cgroups.
package runctest

import (
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BusyboxPath is where Debian's busybox-static installs busybox.
const BusyboxPath = "/bin/busybox"

// Applets are the busybox commands the busybox base links.
var Applets = []string{"sh", "cat", "echo", "ls", "touch", "sleep", "grep", "dd", "nc", "head", "id", "hostname", "wc", "true", "yes", "seq"}

// Busybox returns the path of a static busybox, or skips the test saying what to
// install.
func Busybox(t testing.TB) string {
	t.Helper()
	f, err := elf.Open(BusyboxPath)
	if err != nil {
		t.Skipf("needs Debian's busybox-static at %s (scripts/test installs it): %v", BusyboxPath, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Skipf("%s is dynamically linked: the tests need Debian's busybox-static", BusyboxPath)
		}
	}
	return BusyboxPath
}

// Bases makes a bases directory (node.runc.bases_dir) holding one base, "busybox":
// /bin/busybox and a link for each of Applets. It is removed when the test ends.
func Bases(t testing.TB) string {
	t.Helper()
	bb := Busybox(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "busybox", "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range Applets {
		if err := os.Symlink("busybox", filepath.Join(bin, a)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// RemoveCgroupRoot removes a test's cgroup root from every mounted hierarchy (the
// containers' groups are made in all of them), killing what is left in its groups, and
// reports each container group still there as an error: the code under test should
// have removed it. Call it from t.Cleanup, so it runs after a failed test too.
func RemoveCgroupRoot(t testing.TB, root string) {
	var hiers []string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		hiers = []string{"/sys/fs/cgroup"}
	} else {
		ents, _ := os.ReadDir("/sys/fs/cgroup")
		for _, e := range ents {
			if e.IsDir() {
				hiers = append(hiers, filepath.Join("/sys/fs/cgroup", e.Name()))
			}
		}
	}
	for _, h := range hiers {
		dir := filepath.Join(h, root)
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		groups, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
		for _, g := range groups {
			if fi, err := os.Stat(g); err == nil && fi.IsDir() {
				t.Errorf("container cgroup left behind: %s", g)
				removeGroup(g)
			}
		}
		classes, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, c := range classes {
			if fi, err := os.Stat(c); err == nil && fi.IsDir() {
				removeGroup(c)
			}
		}
		removeGroup(dir)
	}
}

// removeGroup kills the processes of a cgroup directory and removes it, retrying
// while the kernel reaps them.
func removeGroup(dir string) {
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
		time.Sleep(10 * time.Millisecond)
	}
}
