package netshape

import (
	"net/netip"
)

// pool hands out the addresses of a range by slot: slot 0 is the network address, slot
// 1 the bridge (the containers' gateway), the last the broadcast address; containers
// get the slots in between. A container's slot also names its veth and its HTB class,
// so the lowest free slot is always taken: slots stay small while few containers run.
type pool struct {
	prefix netip.Prefix
	size   uint32 // addresses in the range
	used   map[uint32]bool
}

// firstSlot is the first container slot.
const firstSlot = 2

func newPool(p netip.Prefix) *pool {
	return &pool{prefix: p, size: 1 << (32 - p.Bits()), used: map[uint32]bool{}}
}

// addr is the address of a slot.
func (p *pool) addr(slot uint32) netip.Addr {
	b := p.prefix.Addr().As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n += slot
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// gateway is the bridge's address.
func (p *pool) gateway() netip.Addr { return p.addr(1) }

// take reserves the lowest free slot below limit; false when there is none.
func (p *pool) take(limit uint32) (uint32, bool) {
	last := min(p.size-2, limit)
	for s := uint32(firstSlot); s <= last; s++ {
		if !p.used[s] {
			p.used[s] = true
			return s, true
		}
	}
	return 0, false
}

// release frees a slot.
func (p *pool) release(slot uint32) { delete(p.used, slot) }

// batchCeil is the ceiling of the shared batch and idle class, in bytes per second:
// what the link leaves once the measured prod traffic, with a 10% margin, is served
// (link − 1.1 × prod), never below floor, the batch class's guaranteed rate.
func batchCeil(link, prod, floor uint64) uint64 {
	reserve := prod + prod/10
	if reserve >= link || link-reserve < floor {
		return floor
	}
	return link - reserve
}
