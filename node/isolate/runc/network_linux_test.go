//go:build linux

package runc

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/cocaine/cocaine/node/netshape"
)

// testNetns creates a network namespace of the test's own (the containers' "host"),
// deleted by name when the test ends, also after a failure.
func testNetns(t *testing.T) (name, path string) {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip to create the test's network namespace")
	}
	var b [3]byte
	rand.Read(b[:])
	name = "cocaine-test-" + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	return name, "/run/netns/" + name
}

// sink is a TCP server in a namespace that counts what each client address sends.
type sink struct {
	ln    net.Listener
	mu    sync.Mutex
	got   map[string]int64
	conns []net.Conn // closed at the end: a killed container's connection never ends
	wg    sync.WaitGroup
}

// listenIn opens a listener on addr inside the namespace at path, from a thread that
// switches there and back.
func listenIn(t *testing.T, path, addr string) *sink {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		t.Fatal(err)
	}
	ln, lerr := net.Listen("tcp4", addr)
	if err := netns.Set(orig); err != nil {
		panic("cannot return to the test's network namespace: " + err.Error())
	}
	if lerr != nil {
		t.Fatal(lerr)
	}
	s := &sink{ln: ln, got: map[string]int64{}}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Go(func() {
				defer c.Close()
				from := c.RemoteAddr().(*net.TCPAddr).IP.String()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					s.mu.Lock()
					s.got[from] += int64(n)
					s.mu.Unlock()
					if err != nil {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *sink) bytes(from string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[from]
}

// eventually polls fn until it returns nil, failing the test after d.
func eventually(t *testing.T, d time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNetworkClasses: a prod and a batch container, in a network namespace the test
// made, send to a server on the bridge. Each one's traffic is counted in its class
// (the prod container's own, the shared batch class), the prod container is held to
// its ceiling, and the batch ceiling follows the prod rate: link − 1.1 × prod while it
// sends, the whole link once it stopped. Everything is gone afterwards.
func TestNetworkClasses(t *testing.T) {
	needRoot(t)
	_, nsPath := testNetns(t)
	var b [2]byte
	rand.Read(b[:])
	h := testHost(t, Config{Network: &netshape.Config{
		Bridge: "cbt" + hex.EncodeToString(b[:]), Range: "10.213.7.0/24", LinkRate: netshape.Rate(100e6), Netns: nsPath,
	}}, nil)
	if err := h.Refused(); err != nil {
		t.Fatalf("the host refused containers: %v", err)
	}
	sh := h.Shaper()
	gw := sh.Gateway().String()
	srv := listenIn(t, nsPath, gw+":0")
	port := srv.ln.Addr().(*net.TCPAddr).Port
	link := sh.LinkRate()
	if ceil, _ := sh.Ceiling(netshape.Egress); ceil != link {
		t.Fatalf("batch ceiling %d B/s before any traffic, want the link's %d", ceil, link)
	}

	// 40 MB each: eight seconds at the prod ceiling of 40 Mbit/s; the test kills them
	// long before.
	send := fmt.Sprintf("echo ready; dd if=/dev/zero bs=64k count=640 2>/dev/null | nc %s %d; echo sent; exec sleep 600", gw, port)
	prodIso := isolate(t, h, map[string]any{"base": "busybox", "class": "prod", "net_rate": "10mbit", "net_ceil": "40mbit"})
	batchIso := isolate(t, h, map[string]any{"base": "busybox", "class": "batch"})
	prod, prodOut := spawn(t, prodIso, "net-prod", send)
	batch, batchOut := spawn(t, batchIso, "net-batch", send)
	prodOut.wait(t, "ready")
	batchOut.wait(t, "ready")
	pc, bc := prod.container, batch.container

	eventually(t, 20*time.Second, func() error {
		ceil, rate := sh.Ceiling(netshape.Egress)
		if rate < 2e6 || ceil != link-rate-rate/10 {
			return fmt.Errorf("batch ceiling %d B/s with prod at %d B/s: not link − 1.1 × prod yet\nprod: %s\nbatch: %s", ceil, rate, prodOut.text(), batchOut.text())
		}
		return nil
	})
	ceil, rate := sh.Ceiling(netshape.Egress)
	t.Logf("prod at %.1f Mbit/s: batch ceiling %.1f Mbit/s of a %.0f Mbit/s link", float64(rate)*8/1e6, float64(ceil)*8/1e6, float64(link)*8/1e6)
	if rate > 5e6*1.15 {
		t.Errorf("prod rate %d B/s is over its ceiling of 40 Mbit/s (5000000 B/s)", rate)
	}
	for _, c := range []struct {
		name string
		c    *container
	}{{"prod", pc}, {"batch", bc}} {
		got := srv.bytes(c.c.Addr())
		cls, err := sh.Class(c.c.port, netshape.Egress)
		if err != nil {
			t.Fatal(err)
		}
		after := srv.bytes(c.c.Addr())
		t.Logf("%s: %d bytes received, %d bytes in its class (1:%x)", c.name, got, cls.Bytes, cls.Minor)
		if got < 1<<20 || cls.Bytes < uint64(got) || cls.Bytes > uint64(after)*11/10+4<<20 {
			t.Errorf("%s container: %d..%d bytes received, %d in its class", c.name, got, after, cls.Bytes)
		}
	}
	if cls, _ := sh.Class(pc.port, netshape.Egress); cls.Rate != 1250000 || cls.Ceil != 5000000 {
		t.Errorf("prod class rate %d ceil %d B/s, want 1250000 and 5000000", cls.Rate, cls.Ceil)
	}
	// The other way, to the containers, the server's ACKs are in the same classes, on
	// the bridge: hundreds of them for megabytes received.
	for _, c := range []*container{pc, bc} {
		if cls, err := sh.Class(c.port, netshape.Ingress); err != nil || cls.Packets < 100 {
			t.Errorf("ingress class 1:%x of %s: %d packets (%v)", cls.Minor, c.Addr(), cls.Packets, err)
		}
	}

	// Prod stops; the batch container sends on, and gets the whole link again.
	prod.Kill()
	prod.wait(t)
	eventually(t, 10*time.Second, func() error {
		if ceil, _ := sh.Ceiling(netshape.Egress); ceil != link {
			return fmt.Errorf("batch ceiling %d B/s after prod stopped, want the link's %d", ceil, link)
		}
		return nil
	})
	batch.Kill()
	batch.wait(t)
	assertGone(t, h, pc)
	assertGone(t, h, bc)
	for _, c := range []*container{pc, bc} {
		if _, err := os.Stat(filepath.Join(h.cfg.StateDir, "netns", c.id)); !os.IsNotExist(err) {
			t.Errorf("network namespace of %s left behind", c.id)
		}
	}
}

// TestNAT: with nat on, a container reaches a namespace beyond the host ("the world",
// which has no route back to the containers' range) under the host's address; the
// iptables rules carry the host's comment and are gone once it stopped.
func TestNAT(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("needs iptables (Debian package iptables, which scripts/test installs)")
	}
	hostNS, nsPath := testNetns(t)
	worldNS, worldPath := testNetns(t)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	run("-n", hostNS, "link", "add", "up0", "type", "veth", "peer", "name", "up1", "netns", worldNS)
	run("-n", hostNS, "addr", "add", "10.214.0.1/24", "dev", "up0")
	run("-n", hostNS, "link", "set", "up0", "up")
	run("-n", worldNS, "addr", "add", "10.214.0.2/24", "dev", "up1")
	run("-n", worldNS, "link", "set", "up1", "up")
	var comment string
	t.Cleanup(func() { // runs after the host stopped (registered before it)
		out, _ := exec.Command("nsenter", "--net="+nsPath, "--", "iptables-save").CombinedOutput()
		if comment != "" && strings.Contains(string(out), comment) {
			t.Errorf("iptables rules left behind:\n%s", out)
		}
	})
	var b [2]byte
	rand.Read(b[:])
	h := testHost(t, Config{Network: &netshape.Config{
		Bridge: "cbt" + hex.EncodeToString(b[:]), Range: "10.213.9.0/24", LinkRate: netshape.Rate(1e9), Netns: nsPath, NAT: true,
	}}, nil)
	if err := h.Refused(); err != nil {
		t.Fatal(err)
	}
	comment = "cocaine:" + h.tag
	out, _ := exec.Command("nsenter", "--net="+nsPath, "--", "iptables-save").CombinedOutput()
	if n := strings.Count(string(out), comment); n != 3 {
		t.Errorf("%d rules with %s, want 3:\n%s", n, comment, out)
	}
	srv := listenIn(t, worldPath, "10.214.0.2:0")
	port := srv.ln.Addr().(*net.TCPAddr).Port
	iso := isolate(t, h, map[string]any{"base": "busybox", "class": "batch"})
	p, pout := spawn(t, iso, "nat", fmt.Sprintf("echo hello-world | nc 10.214.0.2 %d; exec sleep 600", port))
	eventually(t, 10*time.Second, func() error {
		if n := srv.bytes("10.214.0.1"); n != int64(len("hello-world\n")) {
			return fmt.Errorf("the world got %d bytes from the host's address (and %d from the container's); the container said %q",
				n, srv.bytes(p.Addr()), pout.text())
		}
		return nil
	})
	p.Kill()
	p.wait(t)
}
