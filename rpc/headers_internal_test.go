package rpc

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func traceLE(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// Trace extraction from a channel's first message (protocol.md §5.4).
func TestTraceFromHeaders(t *testing.T) {
	tr := func(v uint64) Header { return Header{HeaderTraceID, traceLE(v)} }
	sp := func(v uint64) Header { return Header{HeaderSpanID, traceLE(v)} }
	pa := func(v uint64) Header { return Header{HeaderParentID, traceLE(v)} }
	bit := func(v string) Header { return Header{HeaderTraceBit, []byte(v)} }
	other := Header{HeaderAuthorization, []byte("1,2")}
	for _, tc := range []struct {
		name    string
		headers []Header
		want    Trace
		fail    bool
	}{
		{"no headers", nil, Trace{}, false},
		{"all three", []Header{tr(1), sp(2), pa(3)}, Trace{TraceID: 1, SpanID: 2, ParentID: 3}, false},
		{"any order, among others", []Header{other, pa(3), tr(1), other, sp(2)}, Trace{TraceID: 1, SpanID: 2, ParentID: 3}, false},
		{"root span: parent 0", []Header{tr(1), sp(2), pa(0)}, Trace{TraceID: 1, SpanID: 2}, false},
		{"all zero: untraced", []Header{tr(0), sp(0), pa(0)}, Trace{}, false},
		{"with trace_bit 1", []Header{tr(1), sp(2), pa(3), bit("1")}, Trace{TraceID: 1, SpanID: 2, ParentID: 3, Verbose: true}, false},
		{"with trace_bit 0", []Header{bit("0"), tr(1), sp(2), pa(3)}, Trace{TraceID: 1, SpanID: 2, ParentID: 3}, false},
		{"missing parent", []Header{tr(1), sp(2)}, Trace{}, false},
		{"missing span", []Header{tr(1), pa(3)}, Trace{}, false},
		{"missing trace", []Header{sp(2), pa(3)}, Trace{}, false},
		{"a repeated id does not stand in for a missing one", []Header{tr(1), tr(1), sp(2)}, Trace{}, false},
		{"the first of repeated ids counts", []Header{tr(1), sp(2), pa(3), tr(9)}, Trace{TraceID: 1, SpanID: 2, ParentID: 3}, false},
		{"short trace_id", []Header{{HeaderTraceID, []byte{1, 2, 3, 4}}, sp(2), pa(3)}, Trace{}, true},
		{"long span_id", []Header{tr(1), {HeaderSpanID, make([]byte, 9)}, pa(3)}, Trace{}, true},
		{"empty parent_id", []Header{tr(1), sp(2), {HeaderParentID, nil}}, Trace{}, true},
		{"trace 0 with a span", []Header{tr(0), sp(2), pa(0)}, Trace{}, true},
		{"trace 0 with a parent", []Header{tr(0), sp(0), pa(3)}, Trace{}, true},
		{"trace without a span", []Header{tr(1), sp(0), pa(3)}, Trace{}, true},
		{"trace_bit 2", []Header{tr(1), sp(2), pa(3), bit("2")}, Trace{}, true},
		{"trace_bit empty", []Header{bit("")}, Trace{}, true},
		{"trace_bit true", []Header{bit("true")}, Trace{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := traceFromHeaders(tc.headers)
			if tc.fail {
				if !errors.Is(err, ErrHPACK) {
					t.Fatalf("got %+v, %v; want ErrHPACK", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
			if got.Traced() != (tc.want.TraceID != 0) {
				t.Fatalf("Traced() = %v", got.Traced())
			}
		})
	}
}

// The byte examples of §5.4 carry trace id 0x0102030405060708: little-endian, not
// big-endian and not a msgpack integer.
func TestTraceSpecBytes(t *testing.T) {
	span := "93 c2 a7 " + hex.EncodeToString([]byte("span_id")) + " a8 02 00 00 00 00 00 00 00"
	parent := "93 c2 a9 " + hex.EncodeToString([]byte("parent_id")) + " a8 03 00 00 00 00 00 00 00"
	for _, entry := range []string{
		"93 c2 a8 " + hex.EncodeToString([]byte("trace_id")) + " a8 08 07 06 05 04 03 02 01",
		"93 c2 50 a8 08 07 06 05 04 03 02 01",
	} {
		in, err := hex.DecodeString(strings.ReplaceAll("93 "+entry+span+parent, " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		var table HeaderTable
		hs, err := table.DecodeHeaders(NewDecoder(in), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := traceFromHeaders(hs)
		if err != nil || got != (Trace{TraceID: 0x0102030405060708, SpanID: 2, ParentID: 3}) {
			t.Fatalf("%s: got %+v, %v", entry, got, err)
		}
	}
}

// What a session writes: the core's three uncompressed literals on replies, the Go
// framework's indexed names on requests.
func TestAppendTrace(t *testing.T) {
	tr := Trace{TraceID: 0x0102030405060708, SpanID: 2, ParentID: 3}
	var want []byte
	for _, h := range []struct {
		name string
		v    uint64
	}{{"trace_id", tr.TraceID}, {"span_id", tr.SpanID}, {"parent_id", tr.ParentID}} {
		want = append(want, 0x93, 0xc2, 0xa0|byte(len(h.name)))
		want = append(want, h.name...)
		want = append(append(want, 0xa8), traceLE(h.v)...)
	}
	if got := appendTrace(nil, tr); !bytes.Equal(got, want) {
		t.Errorf("appendTrace = % x\nwant            % x", got, want)
	}
	want = want[:0]
	for i, v := range []uint64{tr.TraceID, tr.SpanID, tr.ParentID} {
		want = append(want, 0x93, 0xc2, byte(IndexTraceID+i), 0xa8)
		want = append(want, traceLE(v)...)
	}
	if got := appendTraceIndexed(nil, tr); !bytes.Equal(got, want) {
		t.Errorf("appendTraceIndexed = % x\nwant                   % x", got, want)
	}
	// both decode back to the same trace
	for _, b := range [][]byte{appendTrace(nil, tr), appendTraceIndexed(nil, tr)} {
		hs, err := new(HeaderTable).DecodeHeaders(NewDecoder(append([]byte{0x93}, b...)), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := traceFromHeaders(hs); err != nil || got != tr {
			t.Fatalf("got %+v, %v", got, err)
		}
	}
}
