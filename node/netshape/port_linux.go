//go:build linux

package netshape

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrExhausted: no address, filter slot or guaranteed rate is left for a container.
var ErrExhausted = errors.New("netshape: no room for another container")

// Class is a container's network class. Prod containers get an HTB class of their own
// with a guaranteed rate and a ceiling; the others share the batch class.
type Class struct {
	Prod bool
	Rate Rate // prod: guaranteed; 1% of the link when zero
	Ceil Rate // prod: the most it may use; the link when zero
}

// Port is a container's place on the bridge: a network namespace with lo and eth0 (its
// address, a default route through the bridge), the host end of its veth, its class
// and its filters in both directions.
type Port struct {
	s    *Shaper
	id   string
	slot uint32
	prod bool
	rate uint64 // bytes per second, prod only
	path string
	addr netip.Addr
	done bool
}

// Netns is the path of the container's network namespace, for it to join.
func (p *Port) Netns() string { return p.path }

// Addr is the container's address.
func (p *Port) Addr() netip.Addr { return p.addr }

// Veth is the name of the host end of the container's veth.
func (p *Port) Veth() string { return p.s.vethName(p.slot) }

func (p *Port) minor() uint32 {
	if p.prod {
		return p.slot
	}
	return batchMinor
}

// Attach gives container id (a file name) a network namespace on the bridge with the
// next free address, in class c. Errors wrap ErrExhausted when the range, the filter
// slots or the link's rate for prod guarantees is used up.
func (s *Shaper) Attach(id string, c Class) (_ *Port, err error) {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return nil, fmt.Errorf("netshape: container id %q cannot name a file", id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.setUp {
		return nil, errors.New("netshape: the container network is not set up")
	}
	p := &Port{s: s, id: id, prod: c.Prod, path: filepath.Join(s.dir, id)}
	if c.Prod {
		p.rate = c.Rate.Bytes()
		if p.rate == 0 {
			p.rate = max(s.link/100, 1)
		}
		if s.guaranteed+p.rate+s.floor > s.link {
			return nil, fmt.Errorf("%w: a guaranteed %s would exceed the link's %s (prod containers hold %s, batch %s)",
				ErrExhausted, Rate(p.rate*8), s.cfg.LinkRate, Rate(s.guaranteed*8), Rate(s.floor*8))
		}
	}
	slot, ok := s.pool.take(maxFilterSlots)
	if !ok {
		return nil, fmt.Errorf("%w: every address of %s (or all %d filter slots) is in use", ErrExhausted, s.prefix, maxFilterSlots)
	}
	p.slot, p.addr = slot, s.pool.addr(slot)
	s.ports[slot] = p
	s.guaranteed += p.rate
	defer func() {
		if err != nil {
			p.closeLocked()
		}
	}()
	if err := newNetns(p.path); err != nil {
		return nil, fmt.Errorf("netshape: network namespace of %s: %w", id, err)
	}
	if err := s.plugLocked(p); err != nil {
		return nil, fmt.Errorf("netshape: container %s: %w", id, err)
	}
	if err := s.classifyLocked(p, c); err != nil {
		return nil, fmt.Errorf("netshape: container %s: %w", id, err)
	}
	return p, nil
}

// plugLocked creates the veth, its container end eth0 in the namespace with the port's
// address and a default route via the bridge.
func (s *Shaper) plugLocked(p *Port) error {
	cns, err := netns.GetFromPath(p.path)
	if err != nil {
		return err
	}
	defer cns.Close()
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: p.Veth(), MasterIndex: s.bridgeIndex},
		PeerName:  "eth0", PeerNamespace: netlink.NsFd(int(cns)),
	}
	if err := s.nl.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s: %w", p.Veth(), err)
	}
	if err := s.nl.LinkSetUp(veth); err != nil {
		return fmt.Errorf("bring %s up: %w", p.Veth(), err)
	}
	hl, err := s.nl.LinkByName(p.Veth())
	if err != nil {
		return fmt.Errorf("veth %s: %w", p.Veth(), err)
	}
	if err := s.redirectLocked(uint32(hl.Attrs().Index)); err != nil {
		return fmt.Errorf("veth %s: %w", p.Veth(), err)
	}
	h, err := netlink.NewHandleAt(cns)
	if err != nil {
		return err
	}
	defer h.Close()
	for _, name := range []string{"lo", "eth0"} {
		l, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("%s in the container: %w", name, err)
		}
		if name == "eth0" {
			a := &netlink.Addr{IPNet: &net.IPNet{IP: p.addr.AsSlice(), Mask: net.CIDRMask(s.prefix.Bits(), 32)}}
			if err := h.AddrAdd(l, a); err != nil {
				return fmt.Errorf("address %s: %w", a.IPNet, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("bring %s up in the container: %w", name, err)
		}
		if name == "eth0" {
			if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: s.Gateway().AsSlice()}); err != nil {
				return fmt.Errorf("default route via %s: %w", s.Gateway(), err)
			}
		}
	}
	return nil
}

// classifyLocked gives a prod port its own class in both directions and every port the
// filters that send its traffic to its class: by source address on the IFB, by
// destination address on the bridge.
func (s *Shaper) classifyLocked(p *Port, c Class) error {
	for d, dev := range s.dev {
		if p.prod {
			ceil := c.Ceil.Bytes()
			if ceil == 0 || ceil > s.link {
				ceil = s.link
			}
			if err := s.tc.Class().Add(htbClass(dev, rootHandle(), p.slot, p.rate, max(ceil, p.rate), prodPrio)); err != nil {
				return fmt.Errorf("%s class 1:%x: %w", dirNames[d], p.slot, err)
			}
		}
		if err := s.tc.Filter().Add(u32Match(dev, uint16(p.slot), matchOffset[d], p.addr, p.minor())); err != nil {
			return fmt.Errorf("%s filter for %s: %w", dirNames[d], p.addr, err)
		}
	}
	return nil
}

// Close removes the port: its filters, its class, the veth and the namespace, and
// frees its address. Call it once the container has exited. Safe to call more than once.
func (p *Port) Close() error {
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	return p.closeLocked()
}

func (p *Port) closeLocked() error {
	if p.done {
		return nil
	}
	p.done = true
	s := p.s
	var errs []error
	if s.tc != nil {
		for d, dev := range s.dev {
			if dev == 0 {
				continue
			}
			// Filters before the class they point to; errors for what was never made
			// are expected when Attach failed half-way.
			deleteFilters(s.tc, dev, uint16(p.slot))
			if p.prod {
				deleteClass(s.tc, dev, p.slot)
				delete(s.seen[d], p.slot)
			}
		}
	}
	if s.nl != nil {
		if l, err := s.nl.LinkByName(p.Veth()); err == nil {
			if err := s.nl.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("netshape: delete %s: %w", p.Veth(), err))
			}
		}
	}
	if err := removeNetns(p.path); err != nil {
		errs = append(errs, err)
	}
	s.pool.release(p.slot)
	delete(s.ports, p.slot)
	s.guaranteed -= p.rate
	return errors.Join(errs...)
}

// newNetns creates a network namespace and bind-mounts it at path. It is made on a
// thread of its own that is never unlocked, so the Go runtime ends the thread with the
// goroutine instead of running other goroutines in the new namespace.
func newNetns(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return err
	}
	f.Close()
	errc := make(chan error, 1) // the helper's one result; it never waits on us
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		errc <- unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), path, "none", unix.MS_BIND, "")
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// removeNetns unmounts and removes a namespace made by newNetns; gone is fine.
func removeNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netshape: unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netshape: %w", err)
	}
	return nil
}

// forwardLocked turns on IPv4 forwarding in the bridge's namespace, so container
// traffic leaves through the host; Close gives it its old value.
func (s *Shaper) forwardLocked() error {
	old, err := s.readSysctlLocked("net/ipv4/ip_forward")
	if err != nil {
		return err
	}
	if bytes.Equal(bytes.TrimSpace(old), []byte("1")) {
		return nil
	}
	if err := s.sysctlLocked("net/ipv4/ip_forward", []byte("1")); err != nil {
		return err
	}
	s.forwardWas = old
	s.log.Info("turned on IPv4 forwarding for the containers")
	return nil
}

// inHostNS runs fn on a thread in the bridge's namespace. /proc/sys/net shows the
// namespace of the thread that opens it.
func (s *Shaper) inHostNS(fn func() error) error {
	if s.cfg.Netns == "" {
		return fn()
	}
	errc := make(chan error, 1) // the helper's one result
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends in the other namespace
		if err := netns.Set(s.hostNS); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func (s *Shaper) readSysctlLocked(key string) ([]byte, error) {
	var b []byte
	err := s.inHostNS(func() (err error) {
		b, err = os.ReadFile("/proc/sys/" + key)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netshape: sysctl %s: %w", key, err)
	}
	return b, nil
}

func (s *Shaper) sysctlLocked(key string, v []byte) error {
	err := s.inHostNS(func() error { return os.WriteFile("/proc/sys/"+key, v, 0) })
	if err != nil {
		return fmt.Errorf("netshape: sysctl %s: %w", key, err)
	}
	return nil
}

// natLocked masquerades traffic from the range that leaves through another interface
// than the bridge, and accepts its forwarding (a FORWARD policy of DROP would stop it).
// Each rule carries the shaper's comment, by which removeNATLocked finds them again.
func (s *Shaper) natLocked() error {
	if _, err := exec.LookPath("iptables"); err != nil {
		return fmt.Errorf("%w: node.runc.network.nat needs the iptables command (Debian package iptables): %v", ErrMissingFeature, err)
	}
	c := []string{"-m", "comment", "--comment", s.natComment()}
	rules := [][]string{
		append([]string{"POSTROUTING", "-s", s.prefix.String(), "!", "-o", s.cfg.Bridge}, append(c, "-j", "MASQUERADE")...),
		append([]string{"FORWARD", "-s", s.prefix.String()}, append(c, "-j", "ACCEPT")...),
		append([]string{"FORWARD", "-d", s.prefix.String()}, append(c, "-j", "ACCEPT")...),
	}
	for _, r := range rules {
		table := "nat"
		if r[0] == "FORWARD" {
			table = "filter"
		}
		full := append([]string{table}, r...)
		if err := s.iptables(append([]string{"-t", table, "-A"}, r...)...); err != nil {
			return feature("iptables rule "+strings.Join(r, " "), "CONFIG_IP_NF_NAT, CONFIG_NETFILTER_XT_MATCH_COMMENT", err)
		}
		s.natRules = append(s.natRules, full)
	}
	return nil
}

// removeNATLocked deletes every rule with the shaper's comment.
func (s *Shaper) removeNATLocked() {
	for _, table := range []string{"nat", "filter"} {
		out, err := s.iptablesOutput("-t", table, "-S")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 3 || f[0] != "-A" || !strings.Contains(line, "--comment "+s.natComment()) {
				continue
			}
			s.iptables(append([]string{"-t", table, "-D"}, f[1:]...)...)
		}
	}
}

// iptables runs iptables in the bridge's namespace.
func (s *Shaper) iptables(args ...string) error {
	out, err := s.iptablesOutput(args...)
	if err != nil {
		return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (s *Shaper) iptablesOutput(args ...string) ([]byte, error) {
	// -w: wait for the xtables lock instead of failing while another tool holds it.
	args = append([]string{"-w", "5"}, args...)
	cmd := exec.Command("iptables", args...)
	if s.cfg.Netns != "" {
		cmd = exec.Command("nsenter", append([]string{"--net=" + s.cfg.Netns, "--", "iptables"}, args...)...)
	}
	return cmd.CombinedOutput()
}
