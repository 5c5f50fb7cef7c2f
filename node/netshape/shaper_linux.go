//go:build linux

package netshape

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/florianl/go-tc"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Directions, from the containers' point of view. Traffic from a container arrives at
// the host end of its veth (its ingress, redirected to the IFB, whose HTB shapes it,
// classified by source address); traffic to the containers leaves through the bridge
// (its egress HTB, classified by destination address).
const (
	Egress  = 0 // from the containers: the IFB's HTB
	Ingress = 1 // to the containers: the bridge's HTB
)

var dirNames = [2]string{"egress", "ingress"}

// matchOffset is where each direction's u32 filters find the container's address in
// the IPv4 header.
var matchOffset = [2]uint32{12, 16}

// AdjustEvery is how often the batch ceiling is recomputed.
const AdjustEvery = time.Second

// maxFilterSlots bounds the containers with addresses: each has its own u32 filter
// priority on both devices, and the kernel numbers a device's u32 tables below 0x7ff.
const maxFilterSlots = 2000

// Shaper owns the host side of container networking: the bridge with the range's
// first address, one veth per container, the IFB, both HTB trees and their filters,
// forwarding and the optional NAT rule. New validates; Setup builds it (removing what
// a killed daemon left under the same names); Run recomputes the batch ceiling every
// second until its context ends; Close removes everything. Attach and Port.Close are
// safe for concurrent use with each other and with Run.
type Shaper struct {
	cfg    Config
	log    *slog.Logger
	dir    string // containers' network namespaces are bind-mounted here
	tag    string
	prefix netip.Prefix
	link   uint64 // bytes per second
	floor  uint64

	// mu guards the following fields.
	mu          sync.Mutex
	hostNS      netns.NsHandle
	nl          *netlink.Handle
	tc          *tc.Tc
	dev         [2]uint32 // ifindex per direction: the IFB, the bridge
	bridgeIndex int
	pool        *pool
	ports       map[uint32]*Port
	guaranteed  uint64               // prod rates handed out, bytes per second
	ceil        [2]uint64            // the batch class's ceiling now
	prodRate    [2]uint64            // the last measurement
	seen        [2]map[uint32]uint64 // prod classes' byte counters at the last tick
	seenAt      time.Time            // when they were read
	forwardWas  []byte               // ip_forward before Setup changed it; nil if unchanged
	natRules    [][]string           // iptables rules added, for Close
	setUp       bool
}

// New validates cfg. dir holds the containers' network namespaces (created by Setup);
// tag (4 characters of [0-9a-z]: one name must never be the prefix of another's) names what the shaper creates: veths
// cv<tag><slot>, the IFB cifb<tag>, the NAT rule's comment cocaine:<tag>. Two daemons on
// one host need different tags and bridges.
func New(cfg Config, dir, tag string, log *slog.Logger) (*Shaper, error) {
	if err := cfg.Validate("network"); err != nil {
		return nil, err
	}
	if len(tag) != 4 || strings.Trim(tag, "0123456789abcdefghijklmnopqrstuvwxyz") != "" {
		return nil, fmt.Errorf("netshape: tag %q must be 4 characters of [0-9a-z]", tag)
	}
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("netshape: namespace directory %q must be absolute", dir)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Bridge == "" {
		cfg.Bridge = DefaultBridge
	}
	p, _ := cfg.Prefix()
	s := &Shaper{
		cfg: cfg, log: log.With("component", "netshape", "bridge", cfg.Bridge), dir: dir, tag: tag, prefix: p,
		link: cfg.LinkRate.Bytes(), floor: cfg.BatchRate.Bytes(),
		pool: newPool(p), ports: map[uint32]*Port{},
	}
	if s.floor == 0 {
		s.floor = max(s.link/100, 1)
	}
	return s, nil
}

func (s *Shaper) ifbName() string             { return "cifb" + s.tag }
func (s *Shaper) vethName(slot uint32) string { return fmt.Sprintf("cv%s%x", s.tag, slot) }
func (s *Shaper) vethPrefix() string          { return "cv" + s.tag }
func (s *Shaper) natComment() string          { return "cocaine:" + s.tag }

// Gateway is the bridge's address, the containers' default route.
func (s *Shaper) Gateway() netip.Addr { return s.pool.gateway() }

// LinkRate is the configured link rate, in bytes per second.
func (s *Shaper) LinkRate() uint64 { return s.link }

// Setup removes what a daemon with the same tag and bridge left behind, then builds the
// bridge, the IFB and both HTB trees. A kernel without one of the features needed
// fails it with an error wrapping ErrMissingFeature that names the feature; what was
// built until then is removed again.
func (s *Shaper) Setup() (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.setUp || s.nl != nil {
		return errors.New("netshape: Setup called twice")
	}
	defer func() {
		if err != nil {
			s.teardownLocked()
		}
	}()
	path := s.cfg.Netns
	if path == "" {
		path = "/proc/self/ns/net" // the process's: any thread may be elsewhere
	}
	if s.hostNS, err = netns.GetFromPath(path); err != nil {
		return fmt.Errorf("netshape: network namespace %s: %w", path, err)
	}
	if s.nl, err = netlink.NewHandleAt(s.hostNS); err != nil {
		return fmt.Errorf("netshape: netlink in %s: %w", path, err)
	}
	if s.tc, err = tc.Open(&tc.Config{NetNS: int(s.hostNS)}); err != nil {
		return fmt.Errorf("netshape: rtnetlink in %s: %w", path, err)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("netshape: %w", err)
	}
	s.removeStaleLocked()

	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: s.cfg.Bridge, TxQLen: 1000}}
	if err := s.nl.LinkAdd(br); err != nil {
		return feature("bridge "+s.cfg.Bridge, "CONFIG_BRIDGE", err)
	}
	brLink, err := s.nl.LinkByName(s.cfg.Bridge)
	if err != nil {
		return fmt.Errorf("netshape: bridge %s: %w", s.cfg.Bridge, err)
	}
	s.bridgeIndex = brLink.Attrs().Index
	gw := &netlink.Addr{IPNet: &net.IPNet{IP: s.Gateway().AsSlice(), Mask: net.CIDRMask(s.prefix.Bits(), 32)}}
	if err := s.nl.AddrAdd(brLink, gw); err != nil {
		return fmt.Errorf("netshape: address %s on %s: %w", gw.IPNet, s.cfg.Bridge, err)
	}
	if err := s.nl.LinkSetUp(brLink); err != nil {
		return fmt.Errorf("netshape: bring %s up: %w", s.cfg.Bridge, err)
	}
	ifb := &netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: s.ifbName(), TxQLen: 1000}}
	if err := s.nl.LinkAdd(ifb); err != nil {
		return feature("ifb device "+s.ifbName(), "CONFIG_IFB", err)
	}
	ifbLink, err := s.nl.LinkByName(s.ifbName())
	if err != nil {
		return fmt.Errorf("netshape: %s: %w", s.ifbName(), err)
	}
	if err := s.nl.LinkSetUp(ifbLink); err != nil {
		return fmt.Errorf("netshape: bring %s up: %w", s.ifbName(), err)
	}
	s.dev = [2]uint32{uint32(ifbLink.Attrs().Index), uint32(s.bridgeIndex)}

	for d, dev := range s.dev {
		if err := s.tc.Qdisc().Add(htbQdisc(dev)); err != nil {
			return feature("htb qdisc on "+dirNames[d], "CONFIG_NET_SCH_HTB", err)
		}
		if err := s.tc.Class().Add(htbClass(dev, tc.HandleRoot, rootMinor, s.link, s.link, 0)); err != nil {
			return fmt.Errorf("netshape: %s root class: %w", dirNames[d], err)
		}
		if err := s.tc.Class().Add(htbClass(dev, rootHandle(), batchMinor, s.floor, s.link, batchPrio)); err != nil {
			return fmt.Errorf("netshape: %s batch class: %w", dirNames[d], err)
		}
		s.ceil[d] = s.link
		s.seen[d] = map[uint32]uint64{}
	}
	if err := s.probeLocked(); err != nil {
		return err
	}
	if err := s.forwardLocked(); err != nil {
		return err
	}
	if s.cfg.NAT {
		if err := s.natLocked(); err != nil {
			return err
		}
	}
	s.seenAt = time.Now()
	s.setUp = true
	s.log.Info("container network ready", "range", s.prefix.String(), "link_rate", s.cfg.LinkRate.String(), "ifb", s.ifbName())
	return nil
}

func rootHandle() uint32 { return 1<<16 | rootMinor }

// probeLocked makes a veth pair of its own with the ingress redirect every container's
// veth gets, so that a kernel without veth, the ingress qdisc, u32 or mirred fails
// Setup rather than the first container.
func (s *Shaper) probeLocked() error {
	probe := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: s.vethPrefix() + "pa"}, PeerName: s.vethPrefix() + "pb"}
	if err := s.nl.LinkAdd(probe); err != nil {
		return feature("veth", "CONFIG_VETH", err)
	}
	defer s.nl.LinkDel(probe)
	l, err := s.nl.LinkByName(probe.Name)
	if err != nil {
		return fmt.Errorf("netshape: %s: %w", probe.Name, err)
	}
	return s.redirectLocked(uint32(l.Attrs().Index))
}

// redirectLocked sends what arrives at a container's veth (what the container sends)
// through the IFB, whose HTB shapes it. The redirect sits on each veth rather than on
// the bridge: packets redirected from the bridge's own ingress come back from the IFB
// unseen by NAT, while those from a port pass the bridge and the stack as usual.
func (s *Shaper) redirectLocked(veth uint32) error {
	if err := s.tc.Qdisc().Add(ingressQdisc(veth)); err != nil {
		return feature("ingress qdisc", "CONFIG_NET_SCH_INGRESS", err)
	}
	if err := s.tc.Filter().Add(mirredFilter(veth, s.dev[Egress])); err != nil {
		return feature("u32 classifier with the mirred action (redirect to "+s.ifbName()+")", "CONFIG_NET_CLS_U32, CONFIG_NET_ACT_MIRRED", err)
	}
	return nil
}

// ErrMissingFeature: the kernel lacks something container networking needs.
var ErrMissingFeature = errors.New("netshape: the kernel lacks a feature container networking needs")

// feature wraps err from creating what needs a kernel feature: an error the kernel
// gives for an unknown kind becomes ErrMissingFeature naming it and its config option.
func feature(what, option string, err error) error {
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("%w: %s (%s): %v", ErrMissingFeature, what, option, err)
	}
	return fmt.Errorf("netshape: create %s: %w", what, err)
}

// Run recomputes the batch class's ceiling every second, in both directions, until ctx
// ends: link − 1.1 × the prod classes' measured rate, never below the batch rate. It
// returns nil when ctx ends.
func (s *Shaper) Run(ctx context.Context) error {
	t := time.NewTicker(AdjustEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.Adjust(); err != nil {
				s.log.Warn("recomputing the batch ceiling failed", "err", err)
			}
		}
	}
}

// Adjust measures the prod classes' rate since the last call and sets the batch
// ceiling from it. Run calls it every second; tests call it directly.
func (s *Shaper) Adjust() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.setUp {
		return nil
	}
	now := time.Now()
	dt := now.Sub(s.seenAt).Seconds()
	s.seenAt = now
	var errs []error
	for d, dev := range s.dev {
		cs, err := classBytes(s.tc, dev)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s classes: %w", dirNames[d], err))
			continue
		}
		var delta uint64
		seen := make(map[uint32]uint64, len(cs))
		for minor, c := range cs {
			if minor == rootMinor || minor == batchMinor || minor == 0 {
				continue
			}
			seen[minor] = c.bytes
			// A class that appeared since the last tick counts from zero; one that went
			// away no longer counts.
			if c.bytes >= s.seen[d][minor] {
				delta += c.bytes - s.seen[d][minor]
			}
		}
		s.seen[d] = seen
		if dt <= 0 {
			continue
		}
		s.prodRate[d] = uint64(float64(delta) / dt)
		ceil := batchCeil(s.link, s.prodRate[d], s.floor)
		if ceil == s.ceil[d] {
			continue
		}
		if err := s.tc.Class().Replace(htbClass(dev, rootHandle(), batchMinor, s.floor, ceil, batchPrio)); err != nil {
			errs = append(errs, fmt.Errorf("%s batch ceiling: %w", dirNames[d], err))
			continue
		}
		s.ceil[d] = ceil
	}
	return errors.Join(errs...)
}

// Ceiling returns the batch class's ceiling in a direction and the prod rate it was
// computed from, both in bytes per second.
func (s *Shaper) Ceiling(dir int) (ceil, prodRate uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ceil[dir], s.prodRate[dir]
}

// ClassStat is one HTB class's counters.
type ClassStat struct {
	Minor          uint32 // the class is 1:<Minor>
	Bytes, Packets uint64
	Rate, Ceil     uint64 // bytes per second
}

// Class reads the counters of the class a port's traffic lands in, in one direction.
func (s *Shaper) Class(p *Port, dir int) (ClassStat, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.setUp {
		return ClassStat{}, errors.New("netshape: not set up")
	}
	cs, err := classBytes(s.tc, s.dev[dir])
	if err != nil {
		return ClassStat{}, err
	}
	c := cs[p.minor()]
	return ClassStat{Minor: p.minor(), Bytes: c.bytes, Packets: c.packets, Rate: c.rate, Ceil: c.ceil}, nil
}

// Close removes everything Setup and Attach created: the ports left, the filters,
// qdiscs, the IFB, the bridge, the NAT rule; and gives ip_forward its old value. Safe to
// call more than once, and after a failed Setup.
func (s *Shaper) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.teardownLocked()
}

func (s *Shaper) teardownLocked() error {
	if s.nl == nil && s.tc == nil {
		return nil
	}
	var errs []error
	for _, p := range s.ports {
		if err := p.closeLocked(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.forwardWas != nil {
		if err := s.sysctlLocked("net/ipv4/ip_forward", s.forwardWas); err != nil {
			errs = append(errs, err)
		}
		s.forwardWas = nil
	}
	for _, r := range s.natRules {
		if err := s.iptables(append([]string{"-t", r[0], "-D"}, r[1:]...)...); err != nil {
			errs = append(errs, err)
		}
	}
	s.natRules = nil
	s.removeStaleLocked()
	if s.tc != nil {
		s.tc.Close()
		s.tc = nil
	}
	if s.nl != nil {
		s.nl.Close()
		s.nl = nil
	}
	s.hostNS.Close()
	s.hostNS = netns.None()
	s.setUp = false
	return errors.Join(errs...)
}

// removeStaleLocked deletes, by name, what a shaper with this tag and bridge may have
// left: the veths first (a redirect to a missing IFB logs kernel errors), the IFB, the
// bridge (which takes its HTB along), the containers' namespaces and the NAT rules.
func (s *Shaper) removeStaleLocked() {
	if links, err := s.nl.LinkList(); err == nil {
		for _, l := range links {
			if strings.HasPrefix(l.Attrs().Name, s.vethPrefix()) {
				s.nl.LinkDel(l) // with its ingress redirect, before the IFB it points to
			}
		}
	}
	if ifb, err := s.nl.LinkByName(s.ifbName()); err == nil {
		s.nl.LinkDel(ifb)
	}
	if br, err := s.nl.LinkByName(s.cfg.Bridge); err == nil {
		s.nl.LinkDel(br) // its HTB goes with it
	}
	if ents, err := os.ReadDir(s.dir); err == nil {
		for _, e := range ents {
			removeNetns(filepath.Join(s.dir, e.Name()))
		}
	}
	if s.cfg.NAT {
		s.removeNATLocked()
	}
}
