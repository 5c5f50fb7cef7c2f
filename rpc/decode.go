package rpc

import (
	"errors"
	"fmt"
	"math"
)

// maxDepth bounds the nesting of generic values so hostile input cannot exhaust the stack.
const maxDepth = 512

// Kind is the wire type of the next object in a Decoder.
type Kind uint8

// The kinds a Decoder distinguishes. Str and bin are the same kind: both are "raw".
const (
	KindInvalid Kind = iota
	KindNil
	KindBool
	KindUint  // a non-negative integer, whatever its encoding
	KindInt   // a negative integer
	KindFloat // float32 or float64
	KindRaw   // str or bin
	KindArray
	KindMap
	KindExt
)

var kindNames = [...]string{"invalid", "nil", "bool", "uint", "int", "float", "raw", "array", "map", "ext"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + fmt.Sprint(uint8(k)) + ")"
}

// errShort reports a truncated object inside a buffer that should hold a whole one.
var errShort = errors.New("rpc: truncated msgpack object")

// Decoder reads MessagePack objects one after another from a complete buffer. Errors wrap
// ErrParse (malformed or truncated bytes) or ErrInvalidArgument (a well-formed object of the
// wrong type), so callers can tell a broken stream from a type mismatch.
type Decoder struct {
	b   []byte
	off int
}

// NewDecoder returns a Decoder reading b from the start.
func NewDecoder(b []byte) *Decoder { return &Decoder{b: b} }

// Reset makes d read b from the start.
func (d *Decoder) Reset(b []byte) { d.b, d.off = b, 0 }

// Remaining reports how many bytes are left.
func (d *Decoder) Remaining() int { return len(d.b) - d.off }

func (d *Decoder) parseErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s at offset %d", ErrParse, fmt.Sprintf(format, args...), d.off)
}

func (d *Decoder) typeErr(want string, got Kind) error {
	return fmt.Errorf("%w: expected %s, got %s", ErrInvalidArgument, want, got)
}

// Peek reports the kind of the next object without consuming it.
func (d *Decoder) Peek() Kind {
	if d.off >= len(d.b) {
		return KindInvalid
	}
	return kindOf(d.b[d.off])
}

func kindOf(c byte) Kind {
	switch {
	case c <= 0x7f:
		return KindUint
	case c <= 0x8f:
		return KindMap
	case c <= 0x9f:
		return KindArray
	case c <= 0xbf:
		return KindRaw
	case c >= 0xe0:
		return KindInt
	}
	switch c {
	case 0xc0:
		return KindNil
	case 0xc2, 0xc3:
		return KindBool
	case 0xc4, 0xc5, 0xc6, 0xd9, 0xda, 0xdb:
		return KindRaw
	case 0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		return KindExt
	case 0xca, 0xcb:
		return KindFloat
	case 0xcc, 0xcd, 0xce, 0xcf:
		return KindUint
	case 0xd0, 0xd1, 0xd2, 0xd3:
		return KindInt // may still be non-negative; Int/Uint sort it out
	case 0xdc, 0xdd:
		return KindArray
	case 0xde, 0xdf:
		return KindMap
	}
	return KindInvalid // 0xc1 is never used
}

func (d *Decoder) need(n int) ([]byte, error) {
	if n < 0 || len(d.b)-d.off < n {
		return nil, d.parseErr("need %d bytes, have %d", n, len(d.b)-d.off)
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p, nil
}

func (d *Decoder) byte1() (byte, error) {
	if d.off >= len(d.b) {
		return 0, d.parseErr("unexpected end of data")
	}
	c := d.b[d.off]
	d.off++
	return c, nil
}

func (d *Decoder) be(n int) (uint64, error) {
	p, err := d.need(n)
	if err != nil {
		return 0, err
	}
	var v uint64
	for _, c := range p {
		v = v<<8 | uint64(c)
	}
	return v, nil
}

// IsNil consumes a nil and reports true, or reports false and consumes nothing.
func (d *Decoder) IsNil() bool {
	if d.off < len(d.b) && d.b[d.off] == 0xc0 {
		d.off++
		return true
	}
	return false
}

// Bool reads a boolean.
func (d *Decoder) Bool() (bool, error) {
	switch k := d.Peek(); k {
	case KindBool:
		c, _ := d.byte1()
		return c == 0xc3, nil
	default:
		return false, d.typeErr("bool", k)
	}
}

// integer reads any integer as a sign flag plus magnitude bits.
func (d *Decoder) integer() (neg bool, u uint64, i int64, err error) {
	start := d.off
	c, err := d.byte1()
	if err != nil {
		return false, 0, 0, err
	}
	switch {
	case c <= 0x7f:
		return false, uint64(c), 0, nil
	case c >= 0xe0:
		return true, 0, int64(int8(c)), nil
	}
	switch c {
	case 0xcc, 0xcd, 0xce, 0xcf:
		u, err = d.be(1 << (c - 0xcc))
		return false, u, 0, err
	case 0xd0, 0xd1, 0xd2, 0xd3:
		n := 1 << (c - 0xd0)
		v, err := d.be(n)
		if err != nil {
			return false, 0, 0, err
		}
		shift := 64 - 8*n
		i = int64(v<<shift) >> shift // sign-extend
		if i >= 0 {
			return false, uint64(i), 0, nil
		}
		return true, 0, i, nil
	}
	d.off = start
	return false, 0, 0, d.typeErr("integer", kindOf(c))
}

// Uint reads a non-negative integer of any width. Negative numbers are an error.
func (d *Decoder) Uint() (uint64, error) {
	start := d.off
	neg, u, _, err := d.integer()
	if err != nil {
		return 0, err
	}
	if neg {
		d.off = start
		return 0, fmt.Errorf("%w: expected unsigned integer, got negative", ErrInvalidArgument)
	}
	return u, nil
}

// Int reads an integer of any width that fits in int64.
func (d *Decoder) Int() (int64, error) {
	start := d.off
	neg, u, i, err := d.integer()
	if err != nil {
		return 0, err
	}
	if neg {
		return i, nil
	}
	if u > math.MaxInt64 {
		d.off = start
		return 0, fmt.Errorf("%w: integer %d overflows int64", ErrInvalidArgument, u)
	}
	return int64(u), nil
}

// Float reads a float32 or float64; integers are accepted and converted.
func (d *Decoder) Float() (float64, error) {
	if d.off < len(d.b) {
		switch d.b[d.off] {
		case 0xca:
			d.off++
			v, err := d.be(4)
			return float64(math.Float32frombits(uint32(v))), err
		case 0xcb:
			d.off++
			v, err := d.be(8)
			return math.Float64frombits(v), err
		}
	}
	neg, u, i, err := d.integer()
	if err != nil {
		return 0, fmt.Errorf("%w: expected float", ErrInvalidArgument)
	}
	if neg {
		return float64(i), nil
	}
	return float64(u), nil
}

// rawLen reads a str/bin header and returns the payload length.
func (d *Decoder) rawLen() (int, error) {
	c, err := d.byte1()
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case c >= 0xa0 && c <= 0xbf:
		return int(c & 0x1f), nil
	case c == 0xd9 || c == 0xc4:
		n, err = d.be(1)
	case c == 0xda || c == 0xc5:
		n, err = d.be(2)
	case c == 0xdb || c == 0xc6:
		n, err = d.be(4)
	default:
		d.off--
		return 0, d.typeErr("raw", kindOf(c))
	}
	if err != nil {
		return 0, err
	}
	if n > uint64(len(d.b)-d.off) {
		return 0, d.parseErr("raw of %d bytes exceeds the %d left", n, len(d.b)-d.off)
	}
	return int(n), nil
}

// Bytes reads a raw (str or bin). The result aliases the decoder's buffer.
func (d *Decoder) Bytes() ([]byte, error) {
	n, err := d.rawLen()
	if err != nil {
		return nil, err
	}
	return d.need(n)
}

// String reads a raw (str or bin) as a string.
func (d *Decoder) String() (string, error) {
	p, err := d.Bytes()
	return string(p), err
}

// ArrayLen reads an array header. The length is checked against the bytes left, since every
// element takes at least one byte: a hostile header cannot make a caller allocate.
func (d *Decoder) ArrayLen() (int, error) {
	c, err := d.byte1()
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case c >= 0x90 && c <= 0x9f:
		n = uint64(c & 0x0f)
	case c == 0xdc:
		n, err = d.be(2)
	case c == 0xdd:
		n, err = d.be(4)
	default:
		d.off--
		return 0, d.typeErr("array", kindOf(c))
	}
	if err != nil {
		return 0, err
	}
	if n > uint64(len(d.b)-d.off) {
		return 0, d.parseErr("array of %d elements exceeds the %d bytes left", n, len(d.b)-d.off)
	}
	return int(n), nil
}

// MapLen reads a map header, checked like ArrayLen.
func (d *Decoder) MapLen() (int, error) {
	c, err := d.byte1()
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case c >= 0x80 && c <= 0x8f:
		n = uint64(c & 0x0f)
	case c == 0xde:
		n, err = d.be(2)
	case c == 0xdf:
		n, err = d.be(4)
	default:
		d.off--
		return 0, d.typeErr("map", kindOf(c))
	}
	if err != nil {
		return 0, err
	}
	if 2*n > uint64(len(d.b)-d.off) {
		return 0, d.parseErr("map of %d pairs exceeds the %d bytes left", n, len(d.b)-d.off)
	}
	return int(n), nil
}

// Skip consumes the next object, whatever it is.
func (d *Decoder) Skip() error {
	end, err := skipObject(d.b, d.off)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrParse, err)
	}
	d.off = end
	return nil
}

// Raw consumes the next object and returns its encoded bytes (aliasing the buffer).
func (d *Decoder) Raw() (Raw, error) {
	start := d.off
	if err := d.Skip(); err != nil {
		return nil, err
	}
	return Raw(d.b[start:d.off]), nil
}

// Value reads the next object as a generic value: nil, bool, uint64 (non-negative
// integers), int64 (negative integers), float64, string (str and bin), []any,
// map[string]any (maps whose keys are all raw) or map[any]any (other maps; keys are
// uint64, int64, string, bool or nil). Ext objects are an error.
func (d *Decoder) Value() (any, error) { return d.value(0) }

func (d *Decoder) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, d.parseErr("nesting deeper than %d", maxDepth)
	}
	switch k := d.Peek(); k {
	case KindNil:
		d.off++
		return nil, nil
	case KindBool:
		return d.Bool()
	case KindUint, KindInt:
		neg, u, i, err := d.integer()
		if neg {
			return i, err
		}
		return u, err
	case KindFloat:
		return d.Float()
	case KindRaw:
		return d.String()
	case KindArray:
		n, err := d.ArrayLen()
		if err != nil {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = d.value(depth + 1); err != nil {
				return nil, err
			}
		}
		return out, nil
	case KindMap:
		n, err := d.MapLen()
		if err != nil {
			return nil, err
		}
		start := d.off
		strKeys := true
		for i := 0; i < n; i++ { // a first pass decides the map type without allocating twice
			if d.Peek() != KindRaw {
				strKeys = false
			}
			if err := d.Skip(); err != nil {
				return nil, err
			}
			if err := d.Skip(); err != nil {
				return nil, err
			}
		}
		d.off = start
		if strKeys {
			out := make(map[string]any, n)
			for i := 0; i < n; i++ {
				key, err := d.String()
				if err != nil {
					return nil, err
				}
				if out[key], err = d.value(depth + 1); err != nil {
					return nil, err
				}
			}
			return out, nil
		}
		out := make(map[any]any, n)
		for i := 0; i < n; i++ {
			key, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			switch key.(type) {
			case []any, map[string]any, map[any]any:
				return nil, fmt.Errorf("%w: map key of type %T", ErrInvalidArgument, key)
			}
			if out[key], err = d.value(depth + 1); err != nil {
				return nil, err
			}
		}
		return out, nil
	case KindExt:
		return nil, d.typeErr("a value without ext types", k)
	default:
		if d.off >= len(d.b) {
			return nil, d.parseErr("unexpected end of data")
		}
		return nil, d.parseErr("invalid type byte 0x%02x", d.b[d.off])
	}
}

// Unmarshal decodes one whole object from b into a generic value (see Decoder.Value).
// Trailing bytes are an error.
func Unmarshal(b []byte) (any, error) {
	d := NewDecoder(b)
	v, err := d.Value()
	if err != nil {
		return nil, err
	}
	if d.Remaining() != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrParse, d.Remaining())
	}
	return v, nil
}

// skipObject returns the offset just past the object starting at off in b, or errShort if
// b ends before it does, or another error for bytes that are not MessagePack. It is
// iterative, so nesting depth costs no stack.
func skipObject(b []byte, off int) (int, error) {
	pending := uint64(1) // objects still to skip
	for pending > 0 {
		if off >= len(b) {
			return off, errShort
		}
		c := b[off]
		off++
		pending--
		var body uint64 // payload bytes to skip
		var items uint64
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		case c <= 0x8f:
			items = 2 * uint64(c&0x0f)
		case c <= 0x9f:
			items = uint64(c & 0x0f)
		case c <= 0xbf:
			body = uint64(c & 0x1f)
		default:
			w, size, n, err := lengthField(b, off, c)
			if err != nil {
				return off, err
			}
			off += w
			switch kindOf(c) {
			case KindArray:
				items = n
			case KindMap:
				items = 2 * n
			default:
				body = n + size
			}
		}
		if body > uint64(len(b)-off) {
			return off, errShort
		}
		off += int(body)
		// every pending object takes at least one byte, so more of them than bytes left
		// cannot complete (and the count cannot overflow)
		pending += items
		if pending > uint64(len(b)-off) {
			return off, errShort
		}
	}
	return off, nil
}

// lengthField decodes the fixed part following type byte c at b[off:]: it returns the
// width of the length field w, the fixed payload size (for ext: the type byte; for
// numbers: their width) and the variable length n.
func lengthField(b []byte, off int, c byte) (w int, size uint64, n uint64, err error) {
	read := func(width int) (uint64, error) {
		if len(b)-off < width {
			return 0, errShort
		}
		var v uint64
		for _, x := range b[off : off+width] {
			v = v<<8 | uint64(x)
		}
		return v, nil
	}
	switch c {
	case 0xc4, 0xd9:
		n, err = read(1)
		return 1, 0, n, err
	case 0xc5, 0xda, 0xdc, 0xde:
		n, err = read(2)
		return 2, 0, n, err
	case 0xc6, 0xdb, 0xdd, 0xdf:
		n, err = read(4)
		return 4, 0, n, err
	case 0xc7:
		n, err = read(1)
		return 1, 1, n, err
	case 0xc8:
		n, err = read(2)
		return 2, 1, n, err
	case 0xc9:
		n, err = read(4)
		return 4, 1, n, err
	case 0xca, 0xce, 0xd2:
		return 0, 4, 0, nil
	case 0xcb, 0xcf, 0xd3:
		return 0, 8, 0, nil
	case 0xcc, 0xd0:
		return 0, 1, 0, nil
	case 0xcd, 0xd1:
		return 0, 2, 0, nil
	case 0xd4:
		return 0, 2, 0, nil
	case 0xd5:
		return 0, 3, 0, nil
	case 0xd6:
		return 0, 5, 0, nil
	case 0xd7:
		return 0, 9, 0, nil
	case 0xd8:
		return 0, 17, 0, nil
	}
	return 0, 0, 0, fmt.Errorf("invalid type byte 0x%02x", c)
}
