//go:build linux

package netshape

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"

	"github.com/florianl/go-tc"
	"github.com/florianl/go-tc/core"
	"golang.org/x/sys/unix"
)

// HTB class minors. Prod containers' classes are 1:<slot>; slots run from 2 to at most
// 0xfffe, so neither minor below is ever a slot.
const (
	rootMinor  = 1      // the link: rate = ceil = LinkRate
	batchMinor = 0xffff // batch and idle containers, and anything unclassified
)

// Priorities: prod classes borrow spare bandwidth before the batch class does.
const (
	prodPrio  = 0
	batchPrio = 7
)

// mirredPrio is the priority of a veth's ingress redirect to the IFB.
const mirredPrio = 1

// htons converts a 16-bit protocol number to network order, as tcm_info wants it.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// filterInfo is tcm_info of a filter: its priority and protocol.
func filterInfo(prio uint16, proto uint16) uint32 { return uint32(prio)<<16 | uint32(htons(proto)) }

// htbQdisc is the root HTB of a device, unclassified traffic going to the batch class.
func htbQdisc(ifindex uint32) *tc.Object {
	return &tc.Object{
		Msg: tc.Msg{Family: unix.AF_UNSPEC, Ifindex: ifindex, Handle: core.BuildHandle(1, 0), Parent: tc.HandleRoot},
		Attribute: tc.Attribute{Kind: "htb", Htb: &tc.Htb{
			Init: &tc.HtbGlob{Version: 3, Rate2Quantum: 10, Defcls: batchMinor},
		}},
	}
}

// htbClass is class 1:minor under parent with a rate and a ceiling in bytes per second.
func htbClass(ifindex, parent, minor uint32, rate, ceil uint64, prio uint32) *tc.Object {
	h := &tc.Htb{Parms: &tc.HtbOpt{
		Rate: rateSpec(rate), Ceil: rateSpec(ceil),
		// XmitTime returns psched ticks already: no Time2Tick (feasibility.md §4).
		Buffer: core.XmitTime(rate, burst(rate)), Cbuffer: core.XmitTime(ceil, burst(ceil)),
		Quantum: uint32(min(max(rate/10, 1600), 60000)),
		Prio:    prio,
	}}
	if rate > math.MaxUint32 {
		h.Rate64 = &rate
	}
	if ceil > math.MaxUint32 {
		h.Ceil64 = &ceil
	}
	return &tc.Object{
		Msg:       tc.Msg{Family: unix.AF_UNSPEC, Ifindex: ifindex, Handle: core.BuildHandle(1, minor), Parent: parent},
		Attribute: tc.Attribute{Kind: "htb", Htb: h},
	}
}

// rateSpec is a kernel rate spec; rates past 32 bits go in Rate64/Ceil64 as well.
func rateSpec(bytesPerSec uint64) tc.RateSpec {
	// Linklayer 1 (ethernet): the kernel computes the rate table itself.
	return tc.RateSpec{Rate: uint32(min(bytesPerSec, math.MaxUint32)), Linklayer: 1}
}

// burst is how many bytes a class may send at once: 10 ms at its rate, at least two
// full frames.
func burst(bytesPerSec uint64) uint32 {
	return uint32(min(max(bytesPerSec/100, 2*1514), 1<<24))
}

// u32Match is a u32 filter at prio that sends IPv4 packets whose 32-bit word at off
// (12: the source address, 16: the destination) equals addr to class 1:minor.
func u32Match(ifindex uint32, prio uint16, off uint32, addr netip.Addr, minor uint32) *tc.Object {
	b := addr.As4()
	classID := core.BuildHandle(1, minor)
	return &tc.Object{
		Msg: tc.Msg{Family: unix.AF_UNSPEC, Ifindex: ifindex, Parent: core.BuildHandle(1, 0), Info: filterInfo(prio, unix.ETH_P_IP)},
		Attribute: tc.Attribute{Kind: "u32", U32: &tc.U32{
			ClassID: &classID,
			// Native order, so that the bytes reach the kernel in network order.
			Sel: u32Sel(tc.U32Key{Mask: 0xffffffff, Val: binary.NativeEndian.Uint32(b[:]), Off: off}),
		}},
	}
}

// u32Sel builds a selector of simple keys. go-tc marshals the selector's fields after
// nkeys (OffMask, Off, Offoff, Hoff, Hmask) one byte early (feasibility.md §4), which is
// harmless only while they are all zero: this is the one place selectors are made, and
// it never sets them.
func u32Sel(keys ...tc.U32Key) *tc.U32Sel {
	return &tc.U32Sel{Flags: 1 /* TC_U32_TERMINAL */, NKeys: uint8(len(keys)), Keys: keys}
}

// mirredFilter redirects every IPv4 packet arriving at ifindex to the egress of the
// IFB ifb, where HTB shapes it.
func mirredFilter(ifindex, ifb uint32) *tc.Object {
	return &tc.Object{
		Msg: tc.Msg{Family: unix.AF_UNSPEC, Ifindex: ifindex, Parent: core.BuildHandle(0xffff, 0), Info: filterInfo(mirredPrio, unix.ETH_P_IP)},
		Attribute: tc.Attribute{Kind: "u32", U32: &tc.U32{
			Sel: u32Sel(tc.U32Key{}), // one key with mask 0: matches everything
			Actions: &[]*tc.Action{{Kind: "mirred", Mirred: &tc.Mirred{Parms: &tc.MirredParam{
				Action: tc.ActStolen, Eaction: 1 /* TCA_EGRESS_REDIR */, IfIndex: ifb,
			}}}},
		}},
	}
}

// ingressQdisc is the ingress qdisc of a device.
func ingressQdisc(ifindex uint32) *tc.Object {
	return &tc.Object{
		Msg:       tc.Msg{Family: unix.AF_UNSPEC, Ifindex: ifindex, Handle: core.BuildHandle(0xffff, 0), Parent: tc.HandleIngress},
		Attribute: tc.Attribute{Kind: "ingress"},
	}
}

// deleteFilters removes every filter at prio on the device's HTB.
func deleteFilters(t *tc.Tc, ifindex uint32, prio uint16) error {
	err := t.Filter().Delete(&tc.Object{
		Msg:       tc.Msg{Family: unix.AF_UNSPEC, Ifindex: ifindex, Parent: core.BuildHandle(1, 0), Info: filterInfo(prio, unix.ETH_P_IP)},
		Attribute: tc.Attribute{Kind: "u32"},
	})
	if err != nil {
		return fmt.Errorf("delete filters at prio %d of interface %d: %w", prio, ifindex, err)
	}
	return nil
}

// deleteClass removes class 1:minor of the device's HTB.
func deleteClass(t *tc.Tc, ifindex, minor uint32) error {
	err := t.Class().Delete(&tc.Object{
		Msg:       tc.Msg{Family: unix.AF_UNSPEC, Ifindex: ifindex, Handle: core.BuildHandle(1, minor), Parent: core.BuildHandle(1, rootMinor)},
		Attribute: tc.Attribute{Kind: "htb", Htb: &tc.Htb{}},
	})
	if err != nil {
		return fmt.Errorf("delete class 1:%x of interface %d: %w", minor, ifindex, err)
	}
	return nil
}

// classBytes reads the byte counters of every HTB class of a device, by minor.
func classBytes(t *tc.Tc, ifindex uint32) (map[uint32]classCounter, error) {
	objs, err := t.Class().Get(&tc.Msg{Family: unix.AF_UNSPEC, Ifindex: ifindex})
	if err != nil {
		return nil, err
	}
	out := make(map[uint32]classCounter, len(objs))
	for _, o := range objs {
		if o.Kind != "htb" {
			continue
		}
		_, minor := core.SplitHandle(o.Handle)
		var c classCounter
		// TCA_STATS, the flat compat struct: go-tc reads the nested TCA_STATS2 as if
		// it were flat, so its Stats2 is garbage.
		if o.Stats != nil {
			c.bytes, c.packets = o.Stats.Bytes, uint64(o.Stats.Packets)
		}
		if o.Htb != nil && o.Htb.Parms != nil {
			c.rate, c.ceil = uint64(o.Htb.Parms.Rate.Rate), uint64(o.Htb.Parms.Ceil.Rate)
			if o.Htb.Rate64 != nil {
				c.rate = *o.Htb.Rate64
			}
			if o.Htb.Ceil64 != nil {
				c.ceil = *o.Htb.Ceil64
			}
		}
		out[minor] = c
	}
	return out, nil
}

type classCounter struct {
	bytes, packets uint64
	rate, ceil     uint64 // bytes per second
}
