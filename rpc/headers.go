package rpc

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Headers (protocol.md §5): HPACK-like metadata in element 3 of a frame. Each direction of
// each connection has its own table: a static part (1..82) and a dynamic part (83 is the
// newest stored entry) that changes only when the sender stores an entry. There is no
// Huffman coding, no integer prefix coding and no table-size update.

// Header is one (name, value) pair.
type Header struct {
	Name  string
	Value []byte
}

// Names of the headers the wire gives a meaning to.
const (
	HeaderTraceID       = "trace_id"
	HeaderSpanID        = "span_id"
	HeaderParentID      = "parent_id"
	HeaderTraceBit      = "trace_bit"
	HeaderAuthorization = "authorization"
	HeaderLocatorExtra  = "x-cocaine-locator-extra"
)

// Static-table indexes of the trace headers.
const (
	IndexTraceID  = 80
	IndexSpanID   = 81
	IndexParentID = 82
)

const (
	staticSize         = 83   // slots 0..82; 0 is reserved
	dynamicCapacity    = 4096 // bytes, as HTTP/2's default
	dynamicEntryWeight = 32   // per-entry overhead counted against the capacity
)

var zero8 = []byte{0, 0, 0, 0, 0, 0, 0, 0}

// staticTable is RFC 7541's static table (1..61), 18 empty reserved slots, and the three
// trace headers whose default value is 8 zero bytes.
var staticTable = func() [staticSize]Header {
	var t [staticSize]Header
	rfc := []Header{
		{":authority", nil}, {":method", []byte("GET")}, {":method", []byte("POST")},
		{":path", []byte("/")}, {":path", []byte("/index.html")}, {":scheme", []byte("http")},
		{":scheme", []byte("https")}, {":status", []byte("200")}, {":status", []byte("204")},
		{":status", []byte("206")}, {":status", []byte("304")}, {":status", []byte("400")},
		{":status", []byte("404")}, {":status", []byte("500")}, {"accept-charset", nil},
		{"accept-encoding", []byte("gzip, deflate")}, {"accept-language", nil},
		{"accept-ranges", nil}, {"accept", nil}, {"access-control-allow-origin", nil},
		{"age", nil}, {"allow", nil}, {"authorization", nil}, {"cache-control", nil},
		{"content-disposition", nil}, {"content-encoding", nil}, {"content-language", nil},
		{"content-length", nil}, {"content-location", nil}, {"content-range", nil},
		{"content-type", nil}, {"cookie", nil}, {"date", nil}, {"etag", nil}, {"expect", nil},
		{"expires", nil}, {"from", nil}, {"host", nil}, {"if-match", nil},
		{"if-modified-since", nil}, {"if-none-match", nil}, {"if-range", nil},
		{"if-unmodified-since", nil}, {"last-modified", nil}, {"link", nil}, {"location", nil},
		{"max-forwards", nil}, {"proxy-authenticate", nil}, {"proxy-authorization", nil},
		{"range", nil}, {"referer", nil}, {"refresh", nil}, {"retry-after", nil},
		{"server", nil}, {"set-cookie", nil}, {"strict-transport-security", nil},
		{"transfer-encoding", nil}, {"user-agent", nil}, {"vary", nil}, {"via", nil},
		{"www-authenticate", nil},
	}
	copy(t[1:], rfc)
	t[IndexTraceID] = Header{HeaderTraceID, zero8}
	t[IndexSpanID] = Header{HeaderSpanID, zero8}
	t[IndexParentID] = Header{HeaderParentID, zero8}
	return t
}()

// HeaderTable is one direction's table. The zero value is an empty table ready for use.
// It is not safe for concurrent use: each connection direction owns one, used in frame
// order.
type HeaderTable struct {
	dynamic []Header // newest first: dynamic[0] is index 83
	size    int      // bytes used, counting the per-entry overhead
}

func entrySize(name string, value []byte) int { return len(name) + len(value) + dynamicEntryWeight }

// Len reports the number of dynamic entries.
func (t *HeaderTable) Len() int { return len(t.dynamic) }

// Get returns the entry at index i (static or dynamic).
func (t *HeaderTable) Get(i uint64) (Header, error) {
	switch {
	case i == 0:
		return Header{}, fmt.Errorf("%w: header index 0 is reserved", ErrHPACK)
	case i < staticSize:
		return staticTable[i], nil
	case i-staticSize < uint64(len(t.dynamic)):
		return t.dynamic[i-staticSize], nil
	}
	return Header{}, fmt.Errorf("%w: header index %d is beyond the table (%d entries)",
		ErrHPACK, i, staticSize+len(t.dynamic)-1)
}

// Store inserts an entry at the front of the dynamic table, evicting the oldest entries
// until it fits. An entry larger than the whole capacity empties the table and is not
// stored (RFC 7541 §4.4).
func (t *HeaderTable) Store(h Header) {
	sz := entrySize(h.Name, h.Value)
	if sz > dynamicCapacity {
		t.dynamic, t.size = t.dynamic[:0], 0
		return
	}
	for t.size+sz > dynamicCapacity {
		last := t.dynamic[len(t.dynamic)-1]
		t.size -= entrySize(last.Name, last.Value)
		t.dynamic = t.dynamic[:len(t.dynamic)-1]
	}
	h.Value = bytes.Clone(h.Value) // the frame buffer it came from is not ours to keep
	t.dynamic = append(t.dynamic, Header{})
	copy(t.dynamic[1:], t.dynamic)
	t.dynamic[0] = h
	t.size += sz
}

// find returns the index of an exact match, and the index of an entry with the same name.
func (t *HeaderTable) find(h Header) (exact, name uint64) {
	for i := 1; i < staticSize; i++ {
		s := staticTable[i]
		if s.Name == h.Name && s.Name != "" {
			if bytes.Equal(s.Value, h.Value) {
				return uint64(i), uint64(i)
			}
			if name == 0 {
				name = uint64(i)
			}
		}
	}
	for i, s := range t.dynamic {
		if s.Name == h.Name {
			if bytes.Equal(s.Value, h.Value) {
				return uint64(staticSize + i), uint64(staticSize + i)
			}
			if name == 0 {
				name = uint64(staticSize + i)
			}
		}
	}
	return 0, name
}

// DecodeHeaders reads element 3 of a frame: an array of header entries, each an index, a
// literal [store, name, value] or a literal with an indexed name [store, index, value].
// Stored literals are applied to t in order. Errors wrap ErrHPACK.
func (t *HeaderTable) DecodeHeaders(d *Decoder, dst []Header) ([]Header, error) {
	n, err := d.ArrayLen()
	if err != nil {
		return dst, fmt.Errorf("%w: headers must be an array: %v", ErrHPACK, err)
	}
	for i := 0; i < n; i++ {
		h, err := t.decodeEntry(d)
		if err != nil {
			return dst, err
		}
		dst = append(dst, h)
	}
	return dst, nil
}

func (t *HeaderTable) decodeEntry(d *Decoder) (Header, error) {
	switch d.Peek() {
	case KindUint, KindInt: // any width: msgpack-c reads a non-negative 0xd0-0xd3 as positive
		i, err := d.Uint()
		if err != nil {
			return Header{}, fmt.Errorf("%w: header index: %v", ErrHPACK, err)
		}
		return t.Get(i)
	case KindArray:
	default:
		return Header{}, fmt.Errorf("%w: a header entry must be an index or a 3-element array, got %s", ErrHPACK, d.Peek())
	}
	if n, _ := d.ArrayLen(); n != 3 {
		return Header{}, fmt.Errorf("%w: a literal header has 3 elements, got %d", ErrHPACK, n)
	}
	store, err := d.Bool()
	if err != nil {
		return Header{}, fmt.Errorf("%w: the store flag must be a boolean", ErrHPACK)
	}
	var h Header
	switch d.Peek() {
	case KindUint, KindInt:
		i, err := d.Uint()
		if err != nil {
			return Header{}, fmt.Errorf("%w: header name index: %v", ErrHPACK, err)
		}
		named, err := t.Get(i)
		if err != nil {
			return Header{}, err
		}
		h.Name = named.Name
	case KindRaw:
		name, err := d.Bytes()
		if err != nil {
			return Header{}, fmt.Errorf("%w: %v", ErrHPACK, err)
		}
		h.Name = internName(name)
	default:
		return Header{}, fmt.Errorf("%w: a header name must be a raw or an index, got %s", ErrHPACK, d.Peek())
	}
	value, err := d.Bytes()
	if err != nil {
		return Header{}, fmt.Errorf("%w: a header value must be a raw: %v", ErrHPACK, err)
	}
	h.Value = value
	if store {
		t.Store(h)
	}
	return h, nil
}

// internName avoids an allocation for the header names that come on every frame.
func internName(b []byte) string {
	switch string(b) {
	case HeaderTraceID:
		return HeaderTraceID
	case HeaderSpanID:
		return HeaderSpanID
	case HeaderParentID:
		return HeaderParentID
	case HeaderAuthorization:
		return HeaderAuthorization
	case HeaderTraceBit:
		return HeaderTraceBit
	}
	return string(b)
}

// HeaderEncoder encodes one direction's headers. With Compress off (the default, and what
// Cocaine >= 0.12.13.1 sends) every header is an unstored literal [false, name, value]. With
// Compress on it behaves like the Python framework: an exact table match is sent as a bare
// index, anything else as a stored literal, naming the name by index when the table has it.
// The peer's decoder then mirrors the table.
type HeaderEncoder struct {
	Compress bool
	table    HeaderTable
}

// AppendHeader appends one header entry.
func (e *HeaderEncoder) AppendHeader(b []byte, h Header) []byte {
	if !e.Compress {
		b = append(b, 0x93, 0xc2)
		b = AppendString(b, h.Name)
		return AppendBytes(b, h.Value)
	}
	exact, name := e.table.find(h)
	if exact != 0 {
		return AppendUint(b, exact)
	}
	b = append(b, 0x93, 0xc3)
	if name != 0 {
		b = AppendUint(b, name)
	} else {
		b = AppendString(b, h.Name)
	}
	b = AppendBytes(b, h.Value)
	e.table.Store(h)
	return b
}

// Trace is the tracing context of a channel (protocol.md §5.4). The zero value is
// "untraced".
type Trace struct {
	TraceID  uint64
	SpanID   uint64
	ParentID uint64
	Verbose  bool // trace_bit "1": verbose logging for this trace
}

// Traced reports whether t carries a trace.
func (t Trace) Traced() bool { return t.TraceID != 0 }

// traceFromHeaders extracts the trace of a channel's first message. All three ids must be
// present for the channel to be traced; present ones must be exactly 8 bytes, and the
// triple must be consistent, or the error (fatal to the connection) wraps ErrHPACK.
func traceFromHeaders(hs []Header) (Trace, error) {
	var t Trace
	var have uint8 // one bit per id seen; as the original, the first of repeated names counts
	for _, h := range hs {
		var dst *uint64
		var bit uint8
		switch h.Name {
		case HeaderTraceID:
			dst, bit = &t.TraceID, 1
		case HeaderSpanID:
			dst, bit = &t.SpanID, 2
		case HeaderParentID:
			dst, bit = &t.ParentID, 4
		case HeaderTraceBit:
			switch string(h.Value) {
			case "0":
				t.Verbose = false
			case "1":
				t.Verbose = true
			default:
				return Trace{}, fmt.Errorf("%w: trace_bit must be \"0\" or \"1\", got %q", ErrHPACK, h.Value)
			}
			continue
		default:
			continue
		}
		if have&bit != 0 {
			continue
		}
		if len(h.Value) != 8 {
			return Trace{}, fmt.Errorf("%w: %s must be 8 bytes, got %d", ErrHPACK, h.Name, len(h.Value))
		}
		*dst = binary.LittleEndian.Uint64(h.Value)
		have |= bit
	}
	if have != 7 {
		return Trace{Verbose: t.Verbose}, nil
	}
	if t.TraceID == 0 && (t.SpanID != 0 || t.ParentID != 0) {
		return Trace{}, fmt.Errorf("%w: trace_id 0 needs span_id and parent_id 0", ErrHPACK)
	}
	if t.TraceID != 0 && t.SpanID == 0 {
		return Trace{}, fmt.Errorf("%w: a traced channel needs a non-zero span_id", ErrHPACK)
	}
	return t, nil
}

// appendTrace appends the three trace headers as unstored literals, as 0.12.14 does on
// every frame it writes (zeros when untraced).
func appendTrace(b []byte, t Trace) []byte {
	b = append(b, 0x93, 0xc2, 0xa8)
	b = append(b, HeaderTraceID...)
	b = binary.LittleEndian.AppendUint64(append(b, 0xa8), t.TraceID)
	b = append(b, 0x93, 0xc2, 0xa7)
	b = append(b, HeaderSpanID...)
	b = binary.LittleEndian.AppendUint64(append(b, 0xa8), t.SpanID)
	b = append(b, 0x93, 0xc2, 0xa9)
	b = append(b, HeaderParentID...)
	return binary.LittleEndian.AppendUint64(append(b, 0xa8), t.ParentID)
}

// appendTraceIndexed appends the trace headers as the Go framework does: the name by
// static index, the value as an unstored literal.
func appendTraceIndexed(b []byte, t Trace) []byte {
	b = append(b, 0x93, 0xc2, IndexTraceID, 0xa8)
	b = binary.LittleEndian.AppendUint64(b, t.TraceID)
	b = append(b, 0x93, 0xc2, IndexSpanID, 0xa8)
	b = binary.LittleEndian.AppendUint64(b, t.SpanID)
	b = append(b, 0x93, 0xc2, IndexParentID, 0xa8)
	return binary.LittleEndian.AppendUint64(b, t.ParentID)
}
