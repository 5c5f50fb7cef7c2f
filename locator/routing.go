package locator

import (
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/cocaine/cocaine/rpc"
)

// A routing group maps a name to weighted member services. Resolving the group picks one
// member through a consistent-hashing ring built exactly as the original's continuum
// (protocol.md §7.5), so the same seed picks the same member on every implementation:
//
//	total  = sum of the weights, accumulated as a 32-bit float
//	steps  = lround(w / total * 64 * n) for each member, visited in name order
//	points = for each step: MD5(name || step as 8 little-endian bytes), read as four
//	         little-endian uint32 points
//	lookup = the first point strictly above p, wrapping around; p is the XOR of the four
//	         little-endian uint32 words of MD5(seed), or uniformly random without a seed

// Ring is a routing group's continuum. It is immutable once built.
type Ring struct {
	points []RingPoint // sorted by Point, then Name
}

// RingPoint is one element of a ring.
type RingPoint struct {
	Point uint32
	Name  string
}

// NewRing builds the ring of a group. A group with no members or a zero total weight is
// rejected, as the original rejects it on load.
func NewRing(members map[string]uint64) (*Ring, error) {
	if len(members) == 0 {
		return nil, fmt.Errorf("%w: a routing group needs at least one member", ErrInvalidGroup)
	}
	names := make([]string, 0, len(members))
	var total float32
	for name, w := range members {
		names = append(names, name)
		total += float32(w)
	}
	if float64(total) < math.SmallestNonzeroFloat64 || total <= 0 {
		return nil, fmt.Errorf("%w: the total weight of a routing group must be positive", ErrInvalidGroup)
	}
	sort.Strings(names)
	n := float64(len(members))
	r := &Ring{}
	var step [8]byte
	for _, name := range names {
		slice := float64(members[name]) / float64(total)
		steps := int64(math.Round(slice * (64 * n))) // lround: half away from zero
		for i := int64(0); i < steps; i++ {
			binary.LittleEndian.PutUint64(step[:], uint64(i))
			h := md5.New()
			h.Write([]byte(name))
			h.Write(step[:])
			var sum [16]byte
			h.Sum(sum[:0])
			for j := 0; j < 16; j += 4 {
				r.points = append(r.points, RingPoint{binary.LittleEndian.Uint32(sum[j:]), name})
			}
		}
	}
	sort.Slice(r.points, func(i, j int) bool {
		a, b := r.points[i], r.points[j]
		return a.Point < b.Point || a.Point == b.Point && a.Name < b.Name
	})
	if len(r.points) == 0 {
		return nil, fmt.Errorf("%w: no member has enough weight for a point on the ring", ErrInvalidGroup)
	}
	return r, nil
}

// SeedPoint is where a seed lands on the ring: the XOR of the four little-endian words of
// its MD5.
func SeedPoint(seed string) uint32 {
	sum := md5.Sum([]byte(seed))
	var p uint32
	for j := 0; j < 16; j += 4 {
		p ^= binary.LittleEndian.Uint32(sum[j:])
	}
	return p
}

// Pick returns the member for seed; an empty seed picks at random, weighted by the
// members' share of the ring.
func (r *Ring) Pick(seed string) string {
	if seed == "" {
		return r.At(rand.Uint32())
	}
	return r.At(SeedPoint(seed))
}

// At returns the member owning point p: the first ring element strictly above p, or the
// first element when p is above them all.
func (r *Ring) At(p uint32) string {
	i := sort.Search(len(r.points), func(i int) bool { return r.points[i].Point > p })
	if i == len(r.points) {
		i = 0
	}
	return r.points[i].Name
}

// Points returns the ring in order. Do not modify the result.
func (r *Ring) Points() []RingPoint { return r.points }

// AppendMsgpack encodes the ring as the routing stream exports it: [[point, name], ...].
func (r *Ring) AppendMsgpack(b []byte) ([]byte, error) {
	b = rpc.AppendArrayHeader(b, len(r.points))
	for _, p := range r.points {
		b = append(b, 0x92)
		b = rpc.AppendUint(b, uint64(p.Point))
		b = rpc.AppendString(b, p.Name)
	}
	return b, nil
}

// DecodeGroup decodes a stored group definition: a msgpack map {service: weight}.
// Weights must be non-negative integers.
func DecodeGroup(blob []byte) (map[string]uint64, error) {
	v, err := rpc.Unmarshal(blob)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidGroup, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: a group is a map {service: weight}, got %T", ErrInvalidGroup, v)
	}
	out := make(map[string]uint64, len(m))
	for name, w := range m {
		switch x := w.(type) {
		case uint64:
			// The original's group is a map<string, unsigned int>: wider weights fail to load.
			if x > math.MaxUint32 {
				return nil, fmt.Errorf("%w: weight of %q must fit 32 bits, got %d", ErrInvalidGroup, name, x)
			}
			out[name] = x
		case float64:
			// The tools write JSON numbers; accept integral doubles.
			if x < 0 || x != math.Trunc(x) || x > math.MaxUint32 {
				return nil, fmt.Errorf("%w: weight of %q must be a non-negative integer, got %v", ErrInvalidGroup, name, x)
			}
			out[name] = uint64(x)
		default:
			return nil, fmt.Errorf("%w: weight of %q must be a non-negative integer, got %v", ErrInvalidGroup, name, w)
		}
	}
	return out, nil
}
