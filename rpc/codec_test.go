package rpc_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/cocaine/cocaine/rpc"
)

// specBytes turns the byte notation of protocol.md into bytes: hex pairs separated by
// spaces, and "quoted" text standing for its own bytes (without any msgpack header), e.g.
// `93 01 00 91 a7 "storage"`. It panics on malformed notation: the inputs are literals.
func specBytes(s string) []byte {
	var out []byte
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == ' ' || c == '\n' || c == '\t':
			i++
		case c == '"':
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				panic("specBytes: unterminated quote in " + s)
			}
			out = append(out, s[i+1:i+1+j]...)
			i += j + 2
		default:
			if i+2 > len(s) {
				panic("specBytes: odd hex digit in " + s)
			}
			b, err := hex.DecodeString(s[i : i+2])
			if err != nil {
				panic("specBytes: " + err.Error() + " in " + s)
			}
			out = append(out, b...)
			i += 2
		}
	}
	return out
}

// specCat concatenates notations and byte slices.
func specCat(parts ...any) []byte {
	var out []byte
	for _, p := range parts {
		switch x := p.(type) {
		case string:
			out = append(out, specBytes(x)...)
		case []byte:
			out = append(out, x...)
		default:
			panic(fmt.Sprintf("specCat: %T", p))
		}
	}
	return out
}

func TestSpecBytes(t *testing.T) {
	got := specBytes(`93 01 00 91 a7 "storage"`)
	want := []byte{0x93, 0x01, 0x00, 0x91, 0xa7, 's', 't', 'o', 'r', 'a', 'g', 'e'}
	if !bytes.Equal(got, want) {
		t.Fatalf("got % x, want % x", got, want)
	}
}

func TestAppendInteger(t *testing.T) {
	for _, tc := range []struct {
		v    int64
		want string
	}{
		{0, "00"},
		{127, "7f"},
		{128, "cc 80"},
		{255, "cc ff"},
		{256, "cd 01 00"},
		{65535, "cd ff ff"},
		{65536, "ce 00 01 00 00"},
		{1<<32 - 1, "ce ff ff ff ff"},
		{1 << 32, "cf 00 00 00 01 00 00 00 00"},
		{math.MaxInt64, "cf 7f ff ff ff ff ff ff ff"},
		{-1, "ff"},
		{-32, "e0"},
		{-33, "d0 df"},
		{-128, "d0 80"},
		{-129, "d1 ff 7f"},
		{-32768, "d1 80 00"},
		{-32769, "d2 ff ff 7f ff"},
		{math.MinInt32, "d2 80 00 00 00"},
		{math.MinInt32 - 1, "d3 ff ff ff ff 7f ff ff ff"},
		{math.MinInt64, "d3 80 00 00 00 00 00 00 00"},
	} {
		t.Run(fmt.Sprint(tc.v), func(t *testing.T) {
			want := specBytes(tc.want)
			if got := rpc.AppendInt(nil, tc.v); !bytes.Equal(got, want) {
				t.Errorf("AppendInt = % x, want % x", got, want)
			}
			if got, err := rpc.Marshal(tc.v); err != nil || !bytes.Equal(got, want) {
				t.Errorf("Marshal = % x, %v, want % x", got, err, want)
			}
			if tc.v >= 0 {
				if got := rpc.AppendUint(nil, uint64(tc.v)); !bytes.Equal(got, want) {
					t.Errorf("AppendUint = % x, want % x", got, want)
				}
				u, err := rpc.NewDecoder(want).Uint()
				if err != nil || u != uint64(tc.v) {
					t.Errorf("Uint = %d, %v", u, err)
				}
			} else if _, err := rpc.NewDecoder(want).Uint(); !errors.Is(err, rpc.ErrInvalidArgument) {
				t.Errorf("Uint of a negative number: %v, want ErrInvalidArgument", err)
			}
			d := rpc.NewDecoder(want)
			if i, err := d.Int(); err != nil || i != tc.v || d.Remaining() != 0 {
				t.Errorf("Int = %d, %v (%d left)", i, err, d.Remaining())
			}
			v, err := rpc.Unmarshal(want)
			if err != nil {
				t.Fatal(err)
			}
			var wantV any = tc.v // Value gives non-negative integers as uint64
			if tc.v >= 0 {
				wantV = uint64(tc.v)
			}
			if v != wantV {
				t.Errorf("Unmarshal = %#v, want %#v", v, wantV)
			}
		})
	}
	if got := rpc.AppendUint(nil, math.MaxUint64); !bytes.Equal(got, specBytes("cf ff ff ff ff ff ff ff ff")) {
		t.Errorf("AppendUint(MaxUint64) = % x", got)
	}
	if _, err := rpc.NewDecoder(specBytes("cf ff ff ff ff ff ff ff ff")).Int(); !errors.Is(err, rpc.ErrInvalidArgument) {
		t.Errorf("Int of 2^64-1: %v, want ErrInvalidArgument", err)
	}
}

// A receiver accepts any integer width (protocol.md §1.2).
func TestDecodeIntegerAnyWidth(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"01", 1},
		{"cc 01", 1},
		{"cd 00 01", 1},
		{"ce 00 00 00 01", 1},
		{"cf 00 00 00 00 00 00 00 01", 1},
		{"d0 01", 1},
		{"d1 00 01", 1},
		{"d2 00 00 00 01", 1},
		{"d3 00 00 00 00 00 00 00 01", 1},
		{"d3 00 00 00 01 00 00 00 00", 1 << 32},
		{"d0 ff", -1},
		{"d1 ff ff", -1},
		{"d2 ff ff ff ff", -1},
		{"d3 ff ff ff ff ff ff ff ff", -1},
		{"d1 ff 80", -128},
	} {
		t.Run(tc.in, func(t *testing.T) {
			in := specBytes(tc.in)
			i, err := rpc.NewDecoder(in).Int()
			if err != nil || i != tc.want {
				t.Fatalf("Int = %d, %v, want %d", i, err, tc.want)
			}
			u, err := rpc.NewDecoder(in).Uint()
			if tc.want >= 0 && (err != nil || u != uint64(tc.want)) {
				t.Fatalf("Uint = %d, %v, want %d", u, err, tc.want)
			}
			if tc.want < 0 && !errors.Is(err, rpc.ErrInvalidArgument) {
				t.Fatalf("Uint of a negative number: %d, %v", u, err)
			}
		})
	}
}

func TestAppendRawHeader(t *testing.T) {
	for _, tc := range []struct {
		n      int
		header string
	}{
		{0, "a0"},
		{1, "a1"},
		{31, "bf"},
		{32, "da 00 20"},
		{255, "da 00 ff"},
		{256, "da 01 00"},
		{65535, "da ff ff"},
		{65536, "db 00 01 00 00"},
	} {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			payload := bytes.Repeat([]byte{'x'}, tc.n)
			want := append(specBytes(tc.header), payload...)
			check := func(name string, got []byte, err error) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%s: header % x, want % x", name, got[:min(len(got), 5)], want[:min(len(want), 5)])
				}
				if got[0] == 0xd9 || (got[0] >= 0xc4 && got[0] <= 0xc6) {
					t.Fatalf("%s: str8/bin header 0x%02x", name, got[0])
				}
			}
			check("AppendRawHeader", append(rpc.AppendRawHeader(nil, tc.n), payload...), nil)
			check("AppendString", rpc.AppendString(nil, string(payload)), nil)
			check("AppendBytes", rpc.AppendBytes(nil, payload), nil)
			b, err := rpc.Marshal(payload) // []byte is a raw, never bin
			check("Marshal([]byte)", b, err)
			b, err = rpc.Marshal(string(payload))
			check("Marshal(string)", b, err)
			b, err = rpc.Marshal(rpc.Raw(want))
			check("Marshal(Raw)", b, err)

			s, err := rpc.NewDecoder(want).String()
			if err != nil || s != string(payload) {
				t.Fatalf("String: %d bytes, %v", len(s), err)
			}
		})
	}
}

// str8 and bin8/16/32 are read as raw, the same as the old-spec raws (protocol.md §1.2).
func TestDecodeRawAnyForm(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"fixraw", `a3 "abc"`},
		{"raw16", `da 00 03 "abc"`},
		{"raw32", `db 00 00 00 03 "abc"`},
		{"str8", `d9 03 "abc"`},
		{"bin8", `c4 03 "abc"`},
		{"bin16", `c5 00 03 "abc"`},
		{"bin32", `c6 00 00 00 03 "abc"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := specBytes(tc.in)
			d := rpc.NewDecoder(in)
			if k := d.Peek(); k != rpc.KindRaw {
				t.Fatalf("Peek = %s", k)
			}
			if s, err := d.String(); err != nil || s != "abc" || d.Remaining() != 0 {
				t.Fatalf("String = %q, %v", s, err)
			}
			if v, err := rpc.Unmarshal(in); err != nil || v != "abc" {
				t.Fatalf("Unmarshal = %#v, %v", v, err)
			}
			// and as a header value, where they are "raw" too
			hs, err := new(rpc.HeaderTable).DecodeHeaders(rpc.NewDecoder(specCat(`91 93 c2 a1 "x"`, in)), nil)
			if err != nil || len(hs) != 1 || string(hs[0].Value) != "abc" {
				t.Fatalf("as a header value: %v, %v", hs, err)
			}
		})
	}
	// A raw whose announced length runs past the buffer is a parse error, not a panic.
	for _, in := range []string{`a5 "abc"`, `da 00 09 "abc"`, `db ff ff ff ff "abc"`, `c6 ff ff ff ff`, `d9`} {
		if _, err := rpc.NewDecoder(specBytes(in)).String(); !errors.Is(err, rpc.ErrParse) {
			t.Errorf("String(%s): %v, want ErrParse", in, err)
		}
	}
}

func TestUnmarshalValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want any
	}{
		{"nil", "c0", nil},
		{"false", "c2", false},
		{"true", "c3", true},
		{"float64", "cb 3f f8 00 00 00 00 00 00", 1.5},
		{"float32", "ca 3f c0 00 00", 1.5},
		{"array", `92 01 a1 "x"`, []any{uint64(1), "x"}},
		{"str map", `82 a1 "a" 01 a1 "b" ff`, map[string]any{"a": uint64(1), "b": int64(-1)}},
		{"int map", `81 01 a1 "x"`, map[any]any{uint64(1): "x"}},
		{"array16", `dc 00 02 c0 c0`, []any{nil, nil}},
		{"map16", `de 00 01 a1 "k" 90`, map[string]any{"k": []any{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := rpc.Unmarshal(specBytes(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(v, tc.want) {
				t.Fatalf("got %#v, want %#v", v, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"c1", "c1"},
		{"trailing", "01 02"},
		{"short array", "92 01"},
		{"ext", "d4 01 02"},
		{"array key", "81 90 01"},
	} {
		t.Run("reject/"+tc.name, func(t *testing.T) {
			if v, err := rpc.Unmarshal(specBytes(tc.in)); err == nil {
				t.Fatalf("accepted as %#v", v)
			}
		})
	}
}

func TestMarshalDeterministicMaps(t *testing.T) {
	got, err := rpc.Marshal(map[string]any{"b": 2, "a": 1, "c": []any{true, nil}})
	if err != nil {
		t.Fatal(err)
	}
	want := specBytes(`83 a1 "a" 01 a1 "b" 02 a1 "c" 92 c3 c0`)
	if !bytes.Equal(got, want) {
		t.Fatalf("got % x, want % x", got, want)
	}
	got, err = rpc.Marshal(map[uint64]string{65535: "z", 1: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if want := specBytes(`82 01 a1 "a" cd ff ff a1 "z"`); !bytes.Equal(got, want) {
		t.Fatalf("got % x, want % x", got, want)
	}
	if _, err := rpc.Marshal(make(chan int)); err == nil {
		t.Fatal("a channel encoded")
	}
}

// protocol.md §1.3, byte for byte.
func TestFrameSpecExamples(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       string
		channel  uint64
		typ      uint64
		args     string
		nheaders int
	}{
		{"resolve 3 elements", `93 01 00 91 a7 "storage"`, 1, 0, `91 a7 "storage"`, 0},
		{"resolve with empty headers", `94 01 00 91 a7 "storage" 90`, 1, 0, `91 a7 "storage"`, 0},
		{"value without payload", `94 03 00 90 90`, 3, 0, `90`, 0},
		{"storage.read", `93 02 00 92 a4 "apps" a4 "echo"`, 2, 0, `92 a4 "apps" a4 "echo"`, 0},
		{"5 elements", `95 01 00 90 90 c0`, 1, 0, `90`, 0},
		{"7 elements", `97 01 00 90 91 17 81 a1 "x" 01 92 01 02 a3 "abc"`, 1, 0, `90`, 1},
		{"wide channel", `93 cf 00 00 00 00 00 00 00 01 00 90`, 1, 0, `90`, 0},
		{"positive int64 channel", `93 d3 00 00 00 00 00 00 00 05 d0 02 90`, 5, 2, `90`, 0},
		{"control type", `93 07 cd ff fd 90`, 7, rpc.ControlPing, `90`, 0},
		{"huge channel", `93 cf ff ff ff ff ff ff ff ff 00 90`, math.MaxUint64, 0, `90`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var table rpc.HeaderTable
			f, err := rpc.DecodeFrame(specBytes(tc.in), &table)
			if err != nil {
				t.Fatal(err)
			}
			if f.Channel != tc.channel || f.Type != tc.typ || !bytes.Equal(f.Args, specBytes(tc.args)) || len(f.Headers) != tc.nheaders {
				t.Fatalf("got %+v", f)
			}
		})
	}

	// What we send is the 4-element form the core emits.
	var enc rpc.HeaderEncoder
	args, err := rpc.AppendArgs(nil, "storage")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f    rpc.Frame
		want string
	}{
		{rpc.Frame{Channel: 1, Type: 0, Args: args}, `94 01 00 91 a7 "storage" 90`},
		{rpc.Frame{Channel: 3, Type: 0}, `94 03 00 90 90`},
		{rpc.Frame{Channel: 65536, Type: 65535, Args: rpc.Raw{0x90}}, `94 ce 00 01 00 00 cd ff ff 90 90`},
	} {
		if got := rpc.AppendFrame(nil, &tc.f, &enc); !bytes.Equal(got, specBytes(tc.want)) {
			t.Errorf("AppendFrame(%+v) = % x, want %s", tc.f, got, tc.want)
		}
	}
	args, err = rpc.AppendArgs(nil, "apps", "echo")
	if err != nil || !bytes.Equal(args, specBytes(`92 a4 "apps" a4 "echo"`)) {
		t.Fatalf("AppendArgs = % x, %v", args, err)
	}
}

func TestDecodeFrameRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want error
	}{
		{"empty", ``, rpc.ErrParse},
		{"map", `81 01 02`, rpc.ErrFrameFormat},
		{"string", `a3 "abc"`, rpc.ErrFrameFormat},
		{"integer", `01`, rpc.ErrFrameFormat},
		{"nil", `c0`, rpc.ErrFrameFormat},
		{"0 elements", `90`, rpc.ErrFrameFormat},
		{"2 elements", `92 01 00`, rpc.ErrFrameFormat},
		{"negative channel", `93 ff 00 90`, rpc.ErrFrameFormat},
		{"negative int8 channel", `93 d0 80 00 90`, rpc.ErrFrameFormat},
		{"negative int64 channel", `93 d3 ff ff ff ff ff ff ff ff 00 90`, rpc.ErrFrameFormat},
		{"string channel", `93 a1 "1" 00 90`, rpc.ErrFrameFormat},
		{"nil channel", `93 c0 00 90`, rpc.ErrFrameFormat},
		{"float channel", `93 cb 3f f0 00 00 00 00 00 00 00 90`, rpc.ErrFrameFormat},
		{"negative type", `93 01 ff 90`, rpc.ErrFrameFormat},
		{"bool type", `93 01 c3 90`, rpc.ErrFrameFormat},
		{"nil args", `93 01 00 c0`, rpc.ErrFrameFormat},
		{"map args", `93 01 00 80`, rpc.ErrFrameFormat},
		{"string args", `93 01 00 a0`, rpc.ErrFrameFormat},
		{"nil headers", `94 01 00 90 c0`, rpc.ErrFrameFormat},
		{"map headers", `94 01 00 90 80`, rpc.ErrFrameFormat},
		{"bad header entry", `94 01 00 90 91 00`, rpc.ErrHPACK},
		{"trailing bytes", `93 01 00 90 00`, rpc.ErrParse},
		{"two frames", `93 01 00 90 93 02 00 90`, rpc.ErrParse},
		{"truncated", `93 01 00`, rpc.ErrParse},
		{"truncated args", `93 01 00 92 01`, rpc.ErrParse},
		{"c1", `c1`, rpc.ErrParse},
		{"c1 channel", `93 c1 00 90`, rpc.ErrParse},
		{"c1 in args", `93 01 00 91 c1`, rpc.ErrParse},
		{"c1 in headers", `94 01 00 90 91 c1`, rpc.ErrParse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := rpc.DecodeFrame(specBytes(tc.in), new(rpc.HeaderTable))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %+v, %v; want %v", f, err, tc.want)
			}
		})
	}
}

// codecStream is several frames back to back: the spec examples, frames with stored and
// indexed headers (so the header table must be applied in order), an old server's 9-byte
// indexes and a raw16 payload.
var codecStream = specCat(
	`93 01 00 91 a7 "storage"`,
	`94 01 00 91 a7 "storage" 90`,
	`94 03 00 90 90`,
	`93 02 00 92 a4 "apps" a4 "echo"`,
	`94 04 00 90 93 93 c3 50 a8 08 07 06 05 04 03 02 01 93 c3 a5 "x-foo" a3 "bar" 17`,
	`94 05 00 90 93 54 53 cf 00 00 00 00 00 00 00 50`,
	`95 06 01 92 92 0c 02 a3 "msg" 90 c0`,
	`93 07 00 91 da 00 28`, bytes.Repeat([]byte{'z'}, 40),
)

func codecReadAll(t *testing.T, r io.Reader, max int) ([]rpc.Frame, error) {
	t.Helper()
	fr := rpc.NewFrameReader(r, max)
	var out []rpc.Frame
	for {
		f, err := fr.Next()
		if err != nil {
			if err == io.EOF {
				return out, nil
			}
			return out, err
		}
		out = append(out, f)
	}
}

func TestFrameReaderSplits(t *testing.T) {
	want, err := codecReadAll(t, bytes.NewReader(codecStream), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 8 {
		t.Fatalf("%d frames, want 8", len(want))
	}
	if h := want[5].Headers; len(h) != 3 || h[0].Name != "trace_id" || h[1].Name != "x-foo" || h[2].Name != "trace_id" ||
		!bytes.Equal(h[0].Value, specBytes("08 07 06 05 04 03 02 01")) || !bytes.Equal(h[2].Value, make([]byte, 8)) {
		t.Fatalf("headers of frame 5: %+v", h)
	}

	t.Run("one byte at a time", func(t *testing.T) {
		got, err := codecReadAll(t, iotest.OneByteReader(bytes.NewReader(codecStream)), 0)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("got %v %+v", err, got)
		}
	})
	t.Run("half reads", func(t *testing.T) {
		got, err := codecReadAll(t, iotest.HalfReader(bytes.NewReader(codecStream)), 0)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("got %v %+v", err, got)
		}
	})
	t.Run("data with EOF", func(t *testing.T) {
		got, err := codecReadAll(t, iotest.DataErrReader(bytes.NewReader(codecStream)), 0)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("got %v %+v", err, got)
		}
	})
	t.Run("every offset", func(t *testing.T) {
		for i := 0; i <= len(codecStream); i++ {
			r := io.MultiReader(bytes.NewReader(codecStream[:i]), bytes.NewReader(codecStream[i:]))
			got, err := codecReadAll(t, r, 0)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("split at %d: %v %+v", i, err, got)
			}
		}
	})
}

// A frame larger than the reader's first buffer (64 KiB) grows it, however it arrives, and
// frames already returned stay valid while the buffer moves on.
func TestFrameReaderLargeFrame(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 10000) // 160000 bytes
	big := specCat(`94 09 00 91`, rpc.AppendBytes(nil, payload), `90`)
	stream := specCat(`93 01 00 91 a1 "a"`, big, `93 0a 00 91 a1 "b"`)
	check := func(t *testing.T, r io.Reader) {
		got, err := codecReadAll(t, r, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || string(got[0].Args) != string(specBytes(`91 a1 "a"`)) ||
			!bytes.Equal(got[1].Args, specCat(`91`, rpc.AppendBytes(nil, payload))) ||
			string(got[2].Args) != string(specBytes(`91 a1 "b"`)) {
			t.Fatalf("got %d frames", len(got))
		}
	}
	t.Run("whole", func(t *testing.T) { check(t, bytes.NewReader(stream)) })
	t.Run("one byte at a time", func(t *testing.T) { check(t, iotest.OneByteReader(bytes.NewReader(stream))) })
	for _, at := range []int{1, 7, 8, 9, 65535, 65536, 65537, len(stream) - 1} {
		t.Run(fmt.Sprintf("split at %d", at), func(t *testing.T) {
			check(t, io.MultiReader(bytes.NewReader(stream[:at]), bytes.NewReader(stream[at:])))
		})
	}
}

func TestFrameReaderEOF(t *testing.T) {
	one := specBytes(`93 01 00 91 a7 "storage"`)
	for _, tc := range []struct {
		name   string
		in     []byte
		frames int
		want   error
	}{
		{"empty stream", nil, 0, io.EOF},
		{"between frames", specCat(one, one), 2, io.EOF},
		{"inside the first byte's object", one[:1], 0, io.ErrUnexpectedEOF},
		{"inside a raw", specCat(one, one[:len(one)-1]), 1, io.ErrUnexpectedEOF},
		{"inside a length field", specCat(one, `93 01 00 91 da 00`), 1, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fr := rpc.NewFrameReader(iotest.OneByteReader(bytes.NewReader(tc.in)), 0)
			for i := 0; i < tc.frames; i++ {
				if _, err := fr.Next(); err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
			}
			if _, err := fr.Next(); err != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// A reader error other than EOF is passed through.
	boom := errors.New("boom")
	fr := rpc.NewFrameReader(io.MultiReader(bytes.NewReader(one[:3]), iotest.ErrReader(boom)), 0)
	if _, err := fr.Next(); err != boom {
		t.Fatalf("got %v, want boom", err)
	}
}

// codecCountingReader counts the bytes handed out.
type codecCountingReader struct {
	r io.Reader
	n int
}

func (c *codecCountingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// codecZeros is an endless stream of zero bytes: what follows a hostile prefix.
type codecZeros struct{}

func (codecZeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestFrameReaderHostileLengths(t *testing.T) {
	for _, tc := range []struct {
		name   string
		max    int
		prefix string
	}{
		{"raw32", 0, `db ff ff ff ff`},
		{"raw32 as args", 0, `94 01 00 91 db ff ff ff ff`},
		{"bin32", 0, `c6 ff ff ff ff`},
		{"str8 over a tiny limit", 16, `93 01 00 91 d9 ff`},
		{"raw16 over a small limit", 1024, `93 01 00 91 da ff ff`},
		{"ext32", 0, `c9 ff ff ff ff 01`},
		{"array32", 0, `dd ff ff ff ff`},
		{"map32", 0, `df ff ff ff ff`},
		{"array16 over a small limit", 1024, `dc 04 01`},
		{"map16 over a small limit", 1024, `de 02 01`},
		{"nested arrays", 1024, `93 01 00 dc 01 f4 dc 01 f4 dc 01 f4`},
		{"array32 in headers", 0, `94 01 00 90 dd 7f ff ff ff`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := specBytes(tc.prefix)
			for _, oneByte := range []bool{false, true} {
				src := &codecCountingReader{r: io.MultiReader(bytes.NewReader(prefix), codecZeros{})}
				var r io.Reader = src
				if oneByte {
					r = iotest.OneByteReader(src)
				}
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				_, err := rpc.NewFrameReader(r, tc.max).Next()
				runtime.ReadMemStats(&after)
				if !errors.Is(err, rpc.ErrFrameTooLarge) || !errors.Is(err, rpc.ErrFrameFormat) {
					t.Fatalf("one byte %v: got %v, want ErrFrameTooLarge", oneByte, err)
				}
				if src.n > len(prefix) {
					t.Errorf("one byte %v: read %d bytes, the prefix has %d", oneByte, src.n, len(prefix))
				}
				if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
					t.Errorf("one byte %v: allocated %d bytes", oneByte, alloc)
				}
			}
		})
	}
}

func TestFrameReaderMaxFrameSize(t *testing.T) {
	const max = 1000
	frame := func(size int) []byte { // a frame of exactly size bytes: 93 01 00 91 da nn nn ...
		return specCat(`93 01 00 91`, rpc.AppendBytes(nil, bytes.Repeat([]byte{'x'}, size-7)))
	}
	small := specBytes(`93 02 00 90`)
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"at the limit", specCat(frame(max), small), true},
		{"one byte over", frame(max + 1), false},
		{"at the limit, of fixints", specCat(`dc 03 e5`, bytes.Repeat([]byte{1}, max-3)), true},
		{"one fixint over", specCat(`dc 03 e6`, bytes.Repeat([]byte{1}, max-2)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, oneByte := range []bool{false, true} {
				var r io.Reader = bytes.NewReader(tc.in)
				if oneByte {
					r = iotest.OneByteReader(r)
				}
				fr := rpc.NewFrameReader(r, max)
				raw, err := fr.NextRaw()
				if !tc.ok {
					if !errors.Is(err, rpc.ErrFrameTooLarge) {
						t.Fatalf("one byte %v: got %d bytes, %v; want ErrFrameTooLarge", oneByte, len(raw), err)
					}
					continue
				}
				if err != nil || len(raw) != max {
					t.Fatalf("one byte %v: got %d bytes, %v", oneByte, len(raw), err)
				}
				if len(tc.in) > max {
					if f, err := fr.Next(); err != nil || f.Channel != 2 {
						t.Fatalf("one byte %v: the frame after: %+v, %v", oneByte, f, err)
					}
				}
			}
		})
	}
	if fr := rpc.NewFrameReader(nil, 0); fr.MaxFrameSize != rpc.DefaultMaxFrameSize {
		t.Fatalf("default MaxFrameSize = %d", fr.MaxFrameSize)
	}
}

func TestFrameReaderParseError(t *testing.T) {
	for _, in := range []string{`c1`, `93 01 00 91 c1`, `94 01 00 90 91 c1`} {
		fr := rpc.NewFrameReader(iotest.OneByteReader(bytes.NewReader(specBytes(in))), 0)
		if _, err := fr.Next(); !errors.Is(err, rpc.ErrParse) {
			t.Errorf("%s: got %v, want ErrParse", in, err)
		}
	}
	// a well-formed object that is not a frame is a format error
	fr := rpc.NewFrameReader(bytes.NewReader(specBytes(`92 01 00`)), 0)
	if _, err := fr.Next(); !errors.Is(err, rpc.ErrFrameFormat) {
		t.Errorf("got %v, want ErrFrameFormat", err)
	}
}

// codecDecoderArg is an ArgDecoder.
type codecDecoderArg struct{ a, b uint64 }

func (p *codecDecoderArg) DecodeMsgpack(d *rpc.Decoder) error {
	n, err := d.ArrayLen()
	if err != nil {
		return err
	}
	if n != 2 {
		return fmt.Errorf("want a pair, got %d elements", n)
	}
	if p.a, err = d.Uint(); err != nil {
		return err
	}
	p.b, err = d.Uint()
	return err
}

func TestArgsScan(t *testing.T) {
	type dsts struct {
		s, opt string
		n      int
		u      uint64
		u32    uint32
		b      []byte
		ok     bool
		f      float64
		ss     []string
		v      any
		raw    rpc.Raw
		arr    []any
		m      map[string]any
		pair   codecDecoderArg
	}
	for _, tc := range []struct {
		name  string
		args  string
		scan  func(d *dsts) []any
		check func(d *dsts) bool // nil: the scan must fail
	}{
		{"required", `92 a1 "a" 05`,
			func(d *dsts) []any { return []any{&d.s, &d.n} },
			func(d *dsts) bool { return d.s == "a" && d.n == 5 }},
		{"too few", `91 a1 "a"`,
			func(d *dsts) []any { return []any{&d.s, &d.n} }, nil},
		{"no args at all", `90`,
			func(d *dsts) []any { return []any{&d.s} }, nil},
		{"extra ignored", `93 a1 "a" 05 c3`,
			func(d *dsts) []any { return []any{&d.s, &d.n} },
			func(d *dsts) bool { return d.s == "a" && d.n == 5 }},
		{"optional absent", `91 a1 "a"`,
			func(d *dsts) []any { d.opt = "default"; return []any{&d.s, rpc.Optional(&d.opt)} },
			func(d *dsts) bool { return d.s == "a" && d.opt == "default" }},
		{"optional present", `92 a1 "a" a1 "b"`,
			func(d *dsts) []any { d.opt = "default"; return []any{&d.s, rpc.Optional(&d.opt)} },
			func(d *dsts) bool { return d.opt == "b" }},
		{"nil optional string", `92 a1 "a" c0`,
			func(d *dsts) []any { return []any{&d.s, rpc.Optional(&d.opt)} }, nil},
		{"nil optional vector", `92 a1 "a" c0`,
			func(d *dsts) []any { return []any{&d.s, rpc.Optional(&d.ss)} }, nil},
		{"wrong-typed optional", `92 a1 "a" 01`,
			func(d *dsts) []any { return []any{&d.s, rpc.Optional(&d.opt)} }, nil},
		{"nil required string", `91 c0`,
			func(d *dsts) []any { return []any{&d.s} }, nil},
		{"string for int", `91 a1 "5"`,
			func(d *dsts) []any { return []any{&d.n} }, nil},
		{"int for string", `91 05`,
			func(d *dsts) []any { return []any{&d.s} }, nil},
		{"uint", `91 cd ff ff`,
			func(d *dsts) []any { return []any{&d.u} },
			func(d *dsts) bool { return d.u == 65535 }},
		{"uint from positive int64", `91 d3 00 00 00 00 00 00 00 07`,
			func(d *dsts) []any { return []any{&d.u} },
			func(d *dsts) bool { return d.u == 7 }},
		{"uint refuses -1", `91 ff`,
			func(d *dsts) []any { return []any{&d.u} }, nil},
		{"uint refuses int8 -128", `91 d0 80`,
			func(d *dsts) []any { return []any{&d.u} }, nil},
		{"uint32 refuses negative", `91 ff`,
			func(d *dsts) []any { return []any{&d.u32} }, nil},
		{"uint32 overflow", `91 cf 00 00 00 01 00 00 00 00`,
			func(d *dsts) []any { return []any{&d.u32} }, nil},
		{"int accepts negative", `91 d1 80 00`,
			func(d *dsts) []any { return []any{&d.n} },
			func(d *dsts) bool { return d.n == -32768 }},
		{"bytes from bin8", `91 c4 02 01 02`,
			func(d *dsts) []any { return []any{&d.b} },
			func(d *dsts) bool { return bytes.Equal(d.b, []byte{1, 2}) }},
		{"bool", `91 c3`,
			func(d *dsts) []any { return []any{&d.ok} },
			func(d *dsts) bool { return d.ok }},
		{"bool refuses int", `91 01`,
			func(d *dsts) []any { return []any{&d.ok} }, nil},
		{"float from int", `91 03`,
			func(d *dsts) []any { return []any{&d.f} },
			func(d *dsts) bool { return d.f == 3 }},
		{"strings", `91 92 a1 "a" a1 "b"`,
			func(d *dsts) []any { return []any{&d.ss} },
			func(d *dsts) bool { return reflect.DeepEqual(d.ss, []string{"a", "b"}) }},
		{"strings refuses nil element", `91 92 a1 "a" c0`,
			func(d *dsts) []any { return []any{&d.ss} }, nil},
		{"any, raw, array, map", `94 92 01 ff 92 01 02 91 c0 81 a1 "k" a1 "v"`,
			func(d *dsts) []any { return []any{&d.v, &d.raw, &d.arr, &d.m} },
			func(d *dsts) bool {
				return reflect.DeepEqual(d.v, []any{uint64(1), int64(-1)}) &&
					bytes.Equal(d.raw, specBytes(`92 01 02`)) &&
					reflect.DeepEqual(d.arr, []any{nil}) &&
					reflect.DeepEqual(d.m, map[string]any{"k": "v"})
			}},
		{"map refuses integer keys", `91 81 01 01`,
			func(d *dsts) []any { return []any{&d.m} }, nil},
		{"array refuses map", `91 80`,
			func(d *dsts) []any { return []any{&d.arr} }, nil},
		{"ArgDecoder", `91 92 01 02`,
			func(d *dsts) []any { return []any{&d.pair} },
			func(d *dsts) bool { return d.pair == codecDecoderArg{1, 2} }},
		{"ArgDecoder error", `91 91 01`,
			func(d *dsts) []any { return []any{&d.pair} }, nil},
		{"args not an array", `a1 "a"`,
			func(d *dsts) []any { return []any{&d.s} }, nil},
		{"unsupported destination", `91 01`,
			func(d *dsts) []any { var c chan int; return []any{&c} }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d dsts
			err := rpc.Args(specBytes(tc.args)).Scan(tc.scan(&d)...)
			if tc.check == nil {
				if err == nil {
					t.Fatalf("accepted: %+v", d)
				}
				if !errors.Is(err, rpc.ErrInvalidArgument) || !rpc.IsFatal(err) {
					t.Fatalf("error %v: want a Fatal ErrInvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(&d) {
				t.Fatalf("scanned %+v", d)
			}
		})
	}
	if n := rpc.Args(specBytes(`93 01 02 03`)).Len(); n != 3 {
		t.Errorf("Len = %d", n)
	}
	if n := rpc.Args(specBytes(`a1 "a"`)).Len(); n != 0 {
		t.Errorf("Len of malformed args = %d", n)
	}
	if rpc.IsFatal(errors.New("x")) || rpc.Fatal(nil) != nil {
		t.Error("Fatal/IsFatal")
	}
}
