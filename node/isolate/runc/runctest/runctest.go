// Package runctest builds what tests of containers need: a bases directory with a
// busybox base layer made from Debian's busybox-static.
package runctest

import (
	"debug/elf"
	"os"
	"path/filepath"
	"testing"
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
