package rpc_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cocaine/cocaine/rpc"
)

// hdrDecode decodes one headers array with table.
func hdrDecode(table *rpc.HeaderTable, in []byte) ([]rpc.Header, error) {
	d := rpc.NewDecoder(in)
	hs, err := table.DecodeHeaders(d, nil)
	if err == nil && d.Remaining() != 0 {
		err = fmt.Errorf("%d bytes left", d.Remaining())
	}
	return hs, err
}

func hdrEqual(a, b rpc.Header) bool { return a.Name == b.Name && bytes.Equal(a.Value, b.Value) }

func hdrLE(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func TestStaticTable(t *testing.T) {
	var table rpc.HeaderTable
	zero8 := make([]byte, 8)
	for _, tc := range []struct {
		index uint64
		name  string
		value string
	}{
		{1, ":authority", ""},
		{2, ":method", "GET"},
		{3, ":method", "POST"},
		{4, ":path", "/"},
		{8, ":status", "200"},
		{14, ":status", "500"},
		{16, "accept-encoding", "gzip, deflate"},
		{23, "authorization", ""},
		{31, "content-type", ""},
		{60, "via", ""},
		{61, "www-authenticate", ""},
	} {
		h, err := table.Get(tc.index)
		if err != nil || h.Name != tc.name || string(h.Value) != tc.value {
			t.Errorf("Get(%d) = %q=%q, %v; want %q=%q", tc.index, h.Name, h.Value, err, tc.name, tc.value)
		}
	}
	for i := uint64(62); i <= 79; i++ {
		if h, err := table.Get(i); err != nil || h.Name != "" || len(h.Value) != 0 {
			t.Errorf("Get(%d) = %+v, %v; want an empty reserved slot", i, h, err)
		}
	}
	for i, name := range []string{rpc.HeaderTraceID, rpc.HeaderSpanID, rpc.HeaderParentID} {
		h, err := table.Get(uint64(rpc.IndexTraceID + i))
		if err != nil || h.Name != name || !bytes.Equal(h.Value, zero8) {
			t.Errorf("Get(%d) = %q=% x, %v; want %s = 8 zero bytes", rpc.IndexTraceID+i, h.Name, h.Value, err, name)
		}
	}
	for _, i := range []uint64{0, 83, 84, 1 << 40} {
		if h, err := table.Get(i); !errors.Is(err, rpc.ErrHPACK) {
			t.Errorf("Get(%d) = %+v, %v; want ErrHPACK", i, h, err)
		}
	}
}

func TestDynamicTable(t *testing.T) {
	var table rpc.HeaderTable
	table.Store(rpc.Header{Name: "a", Value: []byte("1")})
	table.Store(rpc.Header{Name: "b", Value: []byte("2")})
	table.Store(rpc.Header{Name: "c", Value: []byte("3")})
	if table.Len() != 3 {
		t.Fatalf("Len = %d", table.Len())
	}
	for i, want := range []string{"c", "b", "a"} { // 83 is the newest
		if h, err := table.Get(uint64(83 + i)); err != nil || h.Name != want {
			t.Errorf("Get(%d) = %+v, %v; want %s", 83+i, h, err, want)
		}
	}
	if _, err := table.Get(86); !errors.Is(err, rpc.ErrHPACK) {
		t.Errorf("Get(86): %v, want ErrHPACK", err)
	}

	// Storing copies the value: the frame buffer it came from may be reused.
	v := []byte("mutable")
	table.Store(rpc.Header{Name: "d", Value: v})
	v[0] = 'X'
	if h, _ := table.Get(83); string(h.Value) != "mutable" {
		t.Errorf("stored value changed with its source: %q", h.Value)
	}
}

// Entries weigh len(name)+len(value)+32 against 4096 bytes (protocol.md §5.3).
func TestDynamicTableEviction(t *testing.T) {
	entry := func(name string, weight int) rpc.Header { // an entry of exactly weight bytes
		return rpc.Header{Name: name, Value: bytes.Repeat([]byte{'v'}, weight-32-len(name))}
	}
	names := func(table *rpc.HeaderTable) string {
		var out []string
		for i := 0; i < table.Len(); i++ {
			h, err := table.Get(uint64(83 + i))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, h.Name)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		name    string
		weights []int // stored in order, each named e0, e1, ...
		want    string
	}{
		{"four quarters fit exactly", []int{1024, 1024, 1024, 1024}, "e3,e2,e1,e0"},
		{"a fifth evicts the oldest", []int{1024, 1024, 1024, 1024, 1024}, "e4,e3,e2,e1"},
		{"one byte over evicts the oldest", []int{1024, 1024, 1024, 1025}, "e3,e2,e1"},
		{"a big one evicts several", []int{1000, 1000, 1000, 1000, 3000}, "e4,e3"},
		{"exactly the capacity fits alone", []int{100, 100, 4096}, "e2"},
		{"an oversize entry empties the table", []int{100, 100, 4097}, ""},
		{"storing goes on after an oversize one", []int{100, 4097, 200}, "e2"},
		{"small entries", []int{34, 35, 36}, "e2,e1,e0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var table rpc.HeaderTable
			for i, w := range tc.weights {
				table.Store(entry(fmt.Sprintf("e%d", i), w))
			}
			if got := names(&table); got != tc.want {
				t.Fatalf("table holds [%s], want [%s]", got, tc.want)
			}
		})
	}
}

// Every entry form of protocol.md §5.2, and what each does to the table.
func TestHeaderEntries(t *testing.T) {
	trace := specBytes("08 07 06 05 04 03 02 01")
	for _, tc := range []struct {
		name   string
		in     string // a whole headers array
		want   []rpc.Header
		stored []string // names in the dynamic table afterwards, newest first
	}{
		{"empty", `90`, nil, nil},
		{"bare static index", `91 17`, []rpc.Header{{Name: "authorization", Value: []byte{}}}, nil},
		{"bare trace index", `91 50`, []rpc.Header{{Name: "trace_id", Value: make([]byte, 8)}}, nil},
		{"old server 9-byte index", `93 cf 00 00 00 00 00 00 00 50 cf 00 00 00 00 00 00 00 51 cf 00 00 00 00 00 00 00 52`,
			[]rpc.Header{{Name: "trace_id", Value: make([]byte, 8)}, {Name: "span_id", Value: make([]byte, 8)}, {Name: "parent_id", Value: make([]byte, 8)}}, nil},
		{"index as a positive int8", `91 d0 17`, []rpc.Header{{Name: "authorization", Value: []byte{}}}, nil},
		{"index as a positive int64", `91 d3 00 00 00 00 00 00 00 17`, []rpc.Header{{Name: "authorization", Value: []byte{}}}, nil},
		{"literal", `91 93 c2 a5 "x-foo" a3 "bar"`, []rpc.Header{{Name: "x-foo", Value: []byte("bar")}}, nil},
		{"stored literal", `91 93 c3 a5 "x-foo" a3 "bar"`, []rpc.Header{{Name: "x-foo", Value: []byte("bar")}}, []string{"x-foo"}},
		{"literal with indexed name", `91 93 c2 17 a6 "secret"`, []rpc.Header{{Name: "authorization", Value: []byte("secret")}}, nil},
		{"stored literal with indexed name", `91 93 c3 17 a6 "secret"`, []rpc.Header{{Name: "authorization", Value: []byte("secret")}}, []string{"authorization"}},
		{"name index as 9 bytes", `91 93 c2 cf 00 00 00 00 00 00 00 50 a8 08 07 06 05 04 03 02 01`, []rpc.Header{{Name: "trace_id", Value: trace}}, nil},
		{"spec trace literal", `91 93 c2 a8 "trace_id" a8 08 07 06 05 04 03 02 01`, []rpc.Header{{Name: "trace_id", Value: trace}}, nil},
		{"spec trace literal, name by index", `91 93 c2 50 a8 08 07 06 05 04 03 02 01`, []rpc.Header{{Name: "trace_id", Value: trace}}, nil},
		{"stored entries apply in order", `93 93 c3 a1 "a" a1 "1" 93 c3 a1 "b" a1 "2" 54`,
			[]rpc.Header{{Name: "a", Value: []byte("1")}, {Name: "b", Value: []byte("2")}, {Name: "a", Value: []byte("1")}}, []string{"b", "a"}},
		{"name from a dynamic entry", `92 93 c3 a5 "x-foo" a3 "bar" 93 c3 53 a3 "baz"`,
			[]rpc.Header{{Name: "x-foo", Value: []byte("bar")}, {Name: "x-foo", Value: []byte("baz")}}, []string{"x-foo", "x-foo"}},
		{"str8 and bin values", `92 93 c2 d9 01 "n" c4 01 "v" 93 c2 a1 "m" c5 00 01 "w"`,
			[]rpc.Header{{Name: "n", Value: []byte("v")}, {Name: "m", Value: []byte("w")}}, nil},
		{"empty name and value", `91 93 c3 a0 a0`, []rpc.Header{{Name: "", Value: []byte{}}}, []string{""}},
		{"array16 of entries", `dc 00 01 17`, []rpc.Header{{Name: "authorization", Value: []byte{}}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var table rpc.HeaderTable
			got, err := hdrDecode(&table, specBytes(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if !hdrEqual(got[i], tc.want[i]) {
					t.Fatalf("header %d: got %q=%q, want %q=%q", i, got[i].Name, got[i].Value, tc.want[i].Name, tc.want[i].Value)
				}
			}
			if table.Len() != len(tc.stored) {
				t.Fatalf("%d stored entries, want %d", table.Len(), len(tc.stored))
			}
			for i, name := range tc.stored {
				if h, err := table.Get(uint64(83 + i)); err != nil || h.Name != name {
					t.Fatalf("Get(%d) = %+v, %v; want %q", 83+i, h, err, name)
				}
			}
		})
	}
}

func TestHeaderEntriesRejected(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"not an array", `81 a1 "a" a1 "b"`},
		{"nil headers", `c0`},
		{"index 0", `91 00`},
		{"index past the static table", `91 53`},
		{"index past the dynamic table", `92 93 c3 a1 "a" a1 "b" 54`},
		{"9-byte index 0", `91 cf 00 00 00 00 00 00 00 00`},
		{"huge index", `91 cf ff ff ff ff ff ff ff ff`},
		{"negative index", `91 ff`},
		{"negative int8 index", `91 d0 b0`},
		{"string entry", `91 a1 "a"`},
		{"nil entry", `91 c0`},
		{"map entry", `91 81 a1 "a" a1 "b"`},
		{"bool entry", `91 c3`},
		{"2-element literal", `91 92 c2 a1 "a"`},
		{"4-element literal", `91 94 c2 a1 "a" a1 "b" c0`},
		{"empty literal", `91 90`},
		{"store flag 0", `91 93 00 a1 "a" a1 "b"`},
		{"store flag 1", `91 93 01 a1 "a" a1 "b"`},
		{"store flag nil", `91 93 c0 a1 "a" a1 "b"`},
		{"store flag string", `91 93 a4 "true" a1 "a" a1 "b"`},
		{"name index 0", `91 93 c2 00 a1 "b"`},
		{"name index past the table", `91 93 c2 60 a1 "b"`},
		{"negative name index", `91 93 c2 ff a1 "b"`},
		{"nil name", `91 93 c2 c0 a1 "b"`},
		{"array name", `91 93 c2 90 a1 "b"`},
		{"integer value", `91 93 c2 a1 "a" 01`},
		{"nil value", `91 93 c2 a1 "a" c0`},
		{"array value", `91 93 c2 a1 "a" 90`},
		{"bool value", `91 93 c2 50 c3`},
		{"truncated", `92 17`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := specBytes(tc.in)
			hs, err := hdrDecode(new(rpc.HeaderTable), in)
			if !errors.Is(err, rpc.ErrHPACK) {
				t.Fatalf("got %+v, %v; want ErrHPACK", hs, err)
			}
			// In a frame the same entry is fatal too (an hpack error).
			f, err := rpc.DecodeFrame(specCat(`94 01 00 90`, in), new(rpc.HeaderTable))
			if err == nil {
				t.Fatalf("DecodeFrame accepted %+v", f)
			}
		})
	}
}

// The Python framework stores every new header and then refers to it by its dynamic index
// (protocol.md §5.4); the table lives across frames of the connection.
func TestHeadersPythonSequence(t *testing.T) {
	tr, sp, pa := hdrLE(0x0102030405060708), hdrLE(0x1112131415161718), hdrLE(0x2122232425262728)
	frames := [][]byte{
		specCat(`94 01 00 91 a1 "x" 94`,
			`93 c3 50 a8`, tr, // stored at 83, later 85
			`93 c3 51 a8`, sp, // stored at 83, later 84
			`93 c3 52 a8`, pa, // stored at 83
			`17`, // authorization "" is a static exact match: a bare index
		),
		specCat(`94 02 00 91 a1 "y" 94 55 54 53 17`),
		specCat(`93 03 00 90`), // no headers: the table is untouched
		specCat(`94 04 00 90 93 55 54 53`),
	}
	want := []rpc.Header{
		{Name: "trace_id", Value: tr}, {Name: "span_id", Value: sp}, {Name: "parent_id", Value: pa},
		{Name: "authorization", Value: []byte{}},
	}
	var table rpc.HeaderTable
	for i, in := range frames {
		f, err := rpc.DecodeFrame(in, &table)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		w := want
		switch i {
		case 2:
			w = nil
		case 3:
			w = want[:3]
		}
		if len(f.Headers) != len(w) {
			t.Fatalf("frame %d: %+v", i, f.Headers)
		}
		for j := range w {
			if !hdrEqual(f.Headers[j], w[j]) {
				t.Fatalf("frame %d header %d: %q=% x, want %q=% x", i, j, f.Headers[j].Name, f.Headers[j].Value, w[j].Name, w[j].Value)
			}
		}
	}
	if table.Len() != 3 {
		t.Fatalf("%d dynamic entries, want 3", table.Len())
	}

	// The same table, decoded by a FrameReader from one stream.
	fr := rpc.NewFrameReader(bytes.NewReader(bytes.Join(frames, nil)), 0)
	for i := range frames {
		f, err := fr.Next()
		if err != nil || f.Channel != uint64(i+1) {
			t.Fatalf("frame %d: %+v, %v", i, f, err)
		}
	}
	if fr.Table.Len() != 3 {
		t.Fatalf("reader table: %d entries", fr.Table.Len())
	}
}

// Old servers (≤ 0.12.13.0) index zero trace headers with a fixed 9-byte uint64 and send
// non-zero ones as stored literals every time (protocol.md §5.5).
func TestHeadersOldServer(t *testing.T) {
	tr := hdrLE(42)
	frames := [][]byte{
		specBytes(`94 01 00 90 93 cf 00 00 00 00 00 00 00 50 cf 00 00 00 00 00 00 00 51 cf 00 00 00 00 00 00 00 52`),
		specCat(`94 02 00 90 93 93 c3 cf 00 00 00 00 00 00 00 50 a8`, tr, `93 c3 cf 00 00 00 00 00 00 00 51 a8`, tr,
			`cf 00 00 00 00 00 00 00 52`),
		specCat(`94 03 00 90 92 93 c3 cf 00 00 00 00 00 00 00 50 a8`, tr, `cf 00 00 00 00 00 00 00 55`),
	}
	var table rpc.HeaderTable
	for i, in := range frames {
		f, err := rpc.DecodeFrame(in, &table)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if i == 0 {
			for j, h := range f.Headers {
				if !bytes.Equal(h.Value, make([]byte, 8)) || h.Name != []string{"trace_id", "span_id", "parent_id"}[j] {
					t.Fatalf("frame 0: %+v", f.Headers)
				}
			}
		}
		if i == 2 && (f.Headers[1].Name != "trace_id" || !bytes.Equal(f.Headers[1].Value, tr)) {
			t.Fatalf("frame 2: index 85 gave %+v", f.Headers[1])
		}
	}
	if table.Len() != 3 {
		t.Fatalf("%d dynamic entries, want 3", table.Len())
	}
}

func TestHeaderEncoderUncompressed(t *testing.T) {
	var enc rpc.HeaderEncoder
	for _, tc := range []struct {
		h    rpc.Header
		want string
	}{
		{rpc.Header{Name: "authorization", Value: nil}, `93 c2 ad "authorization" a0`},
		{rpc.Header{Name: "trace_id", Value: make([]byte, 8)}, `93 c2 a8 "trace_id" a8 00 00 00 00 00 00 00 00`},
		{rpc.Header{Name: "x-foo", Value: []byte("bar")}, `93 c2 a5 "x-foo" a3 "bar"`},
		{rpc.Header{Name: "x-foo", Value: []byte("bar")}, `93 c2 a5 "x-foo" a3 "bar"`}, // never by index
	} {
		if got := enc.AppendHeader(nil, tc.h); !bytes.Equal(got, specBytes(tc.want)) {
			t.Errorf("AppendHeader(%q) = % x, want %s", tc.h.Name, got, tc.want)
		}
	}
	f := rpc.Frame{Channel: 1, Headers: []rpc.Header{{Name: "x-foo", Value: []byte("bar")}}}
	if got, want := rpc.AppendFrame(nil, &f, &enc), specBytes(`94 01 00 90 91 93 c2 a5 "x-foo" a3 "bar"`); !bytes.Equal(got, want) {
		t.Errorf("AppendFrame = % x, want % x", got, want)
	}
}

func TestHeaderEncoderCompressed(t *testing.T) {
	enc := rpc.HeaderEncoder{Compress: true}
	for _, tc := range []struct {
		h    rpc.Header
		want string
	}{
		{rpc.Header{Name: "authorization", Value: []byte{}}, `17`},                     // static exact match
		{rpc.Header{Name: "trace_id", Value: make([]byte, 8)}, `50`},                   // static exact match
		{rpc.Header{Name: "authorization", Value: []byte("1,2")}, `93 c3 17 a3 "1,2"`}, // static name, now 83
		{rpc.Header{Name: "x-foo", Value: []byte("bar")}, `93 c3 a5 "x-foo" a3 "bar"`}, // new name, now 83
		{rpc.Header{Name: "authorization", Value: []byte("1,2")}, `54`},                // dynamic exact match
		{rpc.Header{Name: "x-foo", Value: []byte("baz")}, `93 c3 53 a3 "baz"`},         // dynamic name
		{rpc.Header{Name: "trace_id", Value: specBytes("01 00 00 00 00 00 00 00")}, `93 c3 50 a8 01 00 00 00 00 00 00 00`},
	} {
		if got := enc.AppendHeader(nil, tc.h); !bytes.Equal(got, specBytes(tc.want)) {
			t.Errorf("AppendHeader(%q=%q) = % x, want %s", tc.h.Name, tc.h.Value, got, tc.want)
		}
	}
}

// A compressing encoder and a receiving table stay in step over many frames, through
// evictions and oversize entries.
func TestHeaderEncoderRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"authorization", "trace_id", "span_id", "x-a", "x-b", "x-cocaine-locator-extra", "content-type", ""}
	values := func() []byte {
		switch rng.IntN(6) {
		case 0:
			return nil
		case 1:
			return make([]byte, 8)
		case 2:
			return bytes.Repeat([]byte{byte('a' + rng.IntN(3))}, 1+rng.IntN(3))
		case 3:
			return bytes.Repeat([]byte{'m'}, 500+rng.IntN(1500)) // forces evictions
		case 4:
			return bytes.Repeat([]byte{'o'}, 4100) // larger than the whole table
		}
		return []byte(fmt.Sprint(rng.IntN(10)))
	}
	enc := rpc.HeaderEncoder{Compress: true}
	var table rpc.HeaderTable
	var stream []byte
	var sent [][]rpc.Header
	for i := 0; i < 500; i++ {
		hs := make([]rpc.Header, rng.IntN(5))
		for j := range hs {
			hs[j] = rpc.Header{Name: names[rng.IntN(len(names))], Value: values()}
		}
		f := rpc.Frame{Channel: uint64(i + 1), Headers: hs}
		b := rpc.AppendFrame(nil, &f, &enc)
		stream = append(stream, b...)
		sent = append(sent, hs)
		got, err := rpc.DecodeFrame(b, &table)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if len(got.Headers) != len(hs) {
			t.Fatalf("frame %d: %d headers, want %d", i, len(got.Headers), len(hs))
		}
		for j := range hs {
			if !hdrEqual(got.Headers[j], hs[j]) {
				t.Fatalf("frame %d header %d: got %q (%d bytes), want %q (%d bytes)",
					i, j, got.Headers[j].Name, len(got.Headers[j].Value), hs[j].Name, len(hs[j].Value))
			}
		}
	}
	// The same stream through a FrameReader, one fresh table.
	fr := rpc.NewFrameReader(bytes.NewReader(stream), 0)
	for i, hs := range sent {
		f, err := fr.Next()
		if err != nil {
			t.Fatalf("reader frame %d: %v", i, err)
		}
		for j := range hs {
			if !hdrEqual(f.Headers[j], hs[j]) {
				t.Fatalf("reader frame %d header %d differs", i, j)
			}
		}
	}
	if fr.Table.Len() != table.Len() {
		t.Fatalf("tables differ: %d vs %d entries", fr.Table.Len(), table.Len())
	}
	// and the table was used: the same frames sent uncompressed take more bytes
	var plain []byte
	var penc rpc.HeaderEncoder
	for i, hs := range sent {
		plain = rpc.AppendFrame(plain, &rpc.Frame{Channel: uint64(i + 1), Headers: hs}, &penc)
	}
	if len(stream) >= len(plain) {
		t.Fatalf("compressed %d bytes, uncompressed %d", len(stream), len(plain))
	}
}
