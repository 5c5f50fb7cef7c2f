//go:build linux

package runc

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/node/isolate/runc/runctest"
)

// staticEcho builds the echo example with CGO_ENABLED=0 into dir/echo: an app a
// container with only busybox under it can run.
func staticEcho(b *testing.B, dir string) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(gobin, "build", "-o", filepath.Join(dir, "echo"), "github.com/cocaine/cocaine/examples/echo")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build echo: %v\n%s", err, out)
	}
}

// handshakes accepts worker connections and reports when each one's first bytes (its
// handshake) arrive.
func handshakes(b *testing.B, ln net.Listener) <-chan time.Time {
	got := make(chan time.Time, 1) // one worker at a time
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var buf [1]byte
			if _, err := c.Read(buf[:]); err == nil {
				got <- time.Now()
			}
			c.Close()
		}
	}()
	return got
}

// BenchmarkColdStart measures a container worker's cold start, from the start of the
// container to the worker's handshake on its socket: the echo worker on a busybox base,
// in a prod container with one core, started by this isolate (libcontainer in process)
// and by Debian's runc binary (runc run of the same overlay rootfs), alternately, in
// one run. Run it with -benchtime=Nx: each iteration starts one of each.
func BenchmarkColdStart(b *testing.B) {
	needRoot(b)
	runcBin, err := exec.LookPath("runc")
	if err != nil {
		b.Skip("needs Debian's runc for the comparison (apt-get install runc; scripts/bench-containers does)")
	}
	bases := runctest.Bases(b)
	app := b.TempDir()
	staticEcho(b, app)
	state := b.TempDir()
	root := testRoot(b)
	h, err := New(Options{Config: Config{StateDir: state, BasesDir: bases}, CgroupRoot: root})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1) // Run's result
	go func() { done <- h.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-h.Ready()
	if h.Refused() != nil {
		b.Fatal(h.Refused())
	}
	iso, err := h.Factory().New(map[string]any{"base": "busybox", "class": "prod", "cores": 1.0})
	if err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(b.TempDir(), "w.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	hs := handshakes(b, ln)
	args := func(uuid string) []string {
		return []string{"--app", "bench", "--endpoint", sock, "--locator", "127.0.0.1:10053", "--protocol", "1", "--uuid", uuid}
	}
	runcRoot := filepath.Join(state, "runc-binary")
	bundle := filepath.Join(state, "bundle")
	os.MkdirAll(bundle, 0o700)

	var lib, bin []time.Duration
	b.ResetTimer()
	for i := range b.N {
		// this isolate
		start := time.Now()
		p, err := iso.Spawn(context.Background(), node.SpawnSpec{App: "bench", UUID: fmt.Sprintf("lib-%d", i), Dir: app,
			Executable: filepath.Join(app, "echo"), Args: args(fmt.Sprintf("lib-%d", i)), Output: discard{}})
		if err != nil {
			b.Fatal(err)
		}
		select {
		case at := <-hs:
			lib = append(lib, at.Sub(start))
		case <-time.After(10 * time.Second):
			b.Fatal("no handshake from the libcontainer worker")
		}
		p.Kill()
		p.Wait()

		// the runc binary, over the same layers
		id := fmt.Sprintf("bin-%d", i)
		dir := filepath.Join(state, "binroot", id)
		merged := filepath.Join(dir, "merged")
		for _, d := range []string{"upper", "work", "merged"} {
			os.MkdirAll(filepath.Join(dir, d), 0o700)
		}
		writeBundle(b, bundle, merged, sock, filepath.Join(root, "prod", id), args(id))
		start = time.Now()
		opts := fmt.Sprintf("lowerdir=%s:%s,upperdir=%s,workdir=%s", app, filepath.Join(bases, "busybox"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
		if err := unix.Mount("overlay", merged, "overlay", unix.MS_NODEV, opts); err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(runcBin, "--root", runcRoot, "run", "-d", "--bundle", bundle, id)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("runc run: %v: %s", err, out)
		}
		select {
		case at := <-hs:
			bin = append(bin, at.Sub(start))
		case <-time.After(10 * time.Second):
			b.Fatal("no handshake from the runc binary's worker")
		}
		exec.Command(runcBin, "--root", runcRoot, "delete", "-f", id).Run()
		unix.Unmount(merged, unix.MNT_DETACH)
		os.RemoveAll(dir)
	}
	b.StopTimer()
	report(b, "libcontainer", lib)
	report(b, "runc-binary", bin)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// report adds p50 and p99 of samples as metrics.
func report(b *testing.B, name string, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	q := func(f float64) float64 {
		return float64(samples[min(len(samples)-1, int(f*float64(len(samples))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), name+"-p50-ms")
	b.ReportMetric(q(0.99), name+"-p99-ms")
}

// writeBundle writes the OCI config of a container like the isolate's: read-only
// rootfs, the same mounts, namespaces, no capabilities, a prod cgroup with one core.
func writeBundle(b *testing.B, bundle, rootfs, sock, cgroup string, args []string) {
	quota, period, shares := int64(100000), uint64(100000), uint64(1024)
	noDevices := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	spec := &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: rootfs, Readonly: true},
		Hostname: "bench",
		Process: &specs.Process{
			Args: append([]string{"/echo"}, args...), Env: []string{"PATH=/bin", "HOME=/tmp"}, Cwd: "/",
			NoNewPrivileges: true, Capabilities: &specs.LinuxCapabilities{},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777", "size=16777216"}},
			{Destination: sock, Type: "bind", Source: sock, Options: []string{"bind"}},
		},
		Linux: &specs.Linux{
			Namespaces:    []specs.LinuxNamespace{{Type: "pid"}, {Type: "mount"}, {Type: "ipc"}, {Type: "uts"}, {Type: "network"}},
			CgroupsPath:   cgroup,
			Resources:     &specs.LinuxResources{Devices: noDevices, CPU: &specs.LinuxCPU{Quota: &quota, Period: &period, Shares: &shares}},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
	data, err := json.Marshal(spec)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		b.Fatal(err)
	}
}
