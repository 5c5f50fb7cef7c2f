//go:build linux

package runc

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/node/isolate/process"
	"github.com/cocaine/cocaine/node/isolate/runc/runctest"
	"github.com/cocaine/cocaine/node/netshape"
)

const staleHelperEnv = "COCAINE_RUNC_STALE_HELPER"

// staleReport is what the helper daemon tells the test about its container.
type staleReport struct {
	ID, Veth, Cgroup string
	Pid              int
}

// staleHelper is a daemon that starts one networked container and waits to be killed.
func staleHelper() {
	var opts struct {
		Config Config
		Root   string
	}
	if err := json.Unmarshal([]byte(os.Getenv(staleHelperEnv)), &opts); err != nil {
		panic(err)
	}
	h, err := New(Options{Config: opts.Config, CgroupRoot: opts.Root, Log: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		panic(err)
	}
	go h.Run(context.Background())
	<-h.Ready()
	iso, err := h.Factory().New(map[string]any{"base": "busybox", "class": "prod"})
	if err != nil {
		panic(err)
	}
	sock := filepath.Join(opts.Config.StateDir, "w.sock")
	if _, err := net.Listen("unix", sock); err != nil {
		panic(err)
	}
	p, err := iso.Spawn(context.Background(), node.SpawnSpec{App: "stale", UUID: "stale-worker", Dir: opts.Config.StateDir,
		Executable: "/bin/sh", Args: []string{"-c", "exec sleep 600", "--endpoint", sock}, Output: io.Discard})
	if err != nil {
		panic(err)
	}
	c := p.(*container)
	json.NewEncoder(os.Stdout).Encode(staleReport{ID: c.id, Veth: c.port.Veth(), Cgroup: c.cgroup, Pid: c.pid})
	select {} // until killed
}

// TestStaleCleanup: a daemon is killed with a container running; the next daemon with
// the same state directory removes the container, its cgroups, rootfs mount, veth and
// namespace, the old bridge and IFB, before it serves.
func TestStaleCleanup(t *testing.T) {
	needRoot(t)
	_, nsPath := testNetns(t)
	var b [2]byte
	rand.Read(b[:])
	cfg := Config{StateDir: t.TempDir(), BasesDir: runctest.Bases(t), Network: &netshape.Config{
		Bridge: "cbt" + hex.EncodeToString(b[:]), Range: "10.213.8.0/24", LinkRate: netshape.Rate(1e9), Netns: nsPath,
	}}
	root := h0root(t, cfg)
	env, _ := json.Marshal(map[string]any{"Config": cfg, "Root": root})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), staleHelperEnv+"="+string(env))
	cmd.Stderr = t.Output()
	cmd.WaitDelay = time.Second // its container may hold the pipe on
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var rep staleReport
	if err := json.NewDecoder(bufio.NewReader(out)).Decode(&rep); err != nil {
		t.Fatalf("the helper daemon said nothing: %v", err)
	}
	cmd.Process.Kill() // the daemon dies; its container lives on
	cmd.Wait()
	if err := syscall.Kill(rep.Pid, 0); err != nil {
		t.Fatalf("the container's worker %d died with its daemon: %v", rep.Pid, err)
	}
	ns, _ := netns.GetFromPath(nsPath)
	defer ns.Close()
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	if _, err := nh.LinkByName(rep.Veth); err != nil {
		t.Fatalf("veth %s: %v", rep.Veth, err)
	}

	h := testHost(t, cfg, nil)
	if err := h.Refused(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if err := syscall.Kill(rep.Pid, 0); !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("stale worker %d still exists", rep.Pid)
		}
		return nil
	})
	if _, err := nh.LinkByName(rep.Veth); err == nil {
		t.Errorf("stale veth %s left", rep.Veth)
	}
	for _, hier := range process.Hierarchies() {
		if _, err := os.Stat(filepath.Join(hier, rep.Cgroup)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale cgroup %s left in %s", rep.Cgroup, hier)
		}
	}
	for _, p := range []string{filepath.Join(h.rootfsDir(), rep.ID), filepath.Join(h.containersDir(), rep.ID), filepath.Join(cfg.StateDir, "netns", rep.ID)} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale %s left", p)
		}
	}
	// and the new daemon's network works
	iso := isolate(t, h, map[string]any{"base": "busybox", "class": "batch"})
	p, out2 := spawn(t, iso, "fresh", "echo ready; exec sleep 600")
	out2.wait(t, "ready")
	if p.Addr() == "" {
		t.Error("no address for a container after the cleanup")
	}
	p.Kill()
	p.wait(t)
}
