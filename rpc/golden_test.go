package rpc_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocaine/cocaine/rpc"
)

// The golden frames in testdata/frames are the cross-language conformance suite: every
// framework decodes each NAME.msgpack (one or more frames, decoded in order with one
// header table) and re-encodes them, comparing with the canonical bytes in index.json
// ("canonical": plain literals as the core sends; "canonical_compressed": with the dynamic
// table, as the Python framework sends). NAME.txt describes each for people.
//
// Regenerate with: go test ./rpc -run TestGolden -update

var update = flag.Bool("update", false, "rewrite the golden frames in testdata/frames")

type golden struct {
	name string
	desc string
	wire string // hex of the input bytes; spaces allowed
}

func hx(parts ...string) string { return strings.Join(parts, " ") }

func str(s string) string {
	return hex.EncodeToString(rpc.AppendString(nil, s))
}

func le(v uint64) string {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return "a8 " + hex.EncodeToString(b)
}

var zeroTrace = hx("93 c2", str("trace_id"), le(0), "93 c2", str("span_id"), le(0), "93 c2", str("parent_id"), le(0))

var goldens = []golden{
	{"resolve-3-elements", "locator resolve(\"storage\") on channel 1, three elements, no headers (protocol.md §1.3)",
		hx("93 01 00 91", str("storage"))},
	{"resolve-empty-headers", "the same with an empty header list, as the Python and Go clients send it",
		hx("94 01 00 91", str("storage"), "90")},
	{"resolve-seed", "resolve(\"group\", \"seed\") on channel 999999, the id the Python logger uses",
		hx("94 ce 00 0f 42 3f 00 92", str("group"), str("seed"), "90")},
	{"value-void", "a value reply with no payload on channel 3 (storage.write succeeded), no headers",
		"94 03 00 90 90"},
	{"value-void-traced", "the same as the core sends it: three uncompressed zero trace headers",
		hx("94 03 00 90 93", zeroTrace)},
	{"storage-read", "storage.read(\"apps\", \"echo\") on channel 2",
		hx("93 02 00 92", str("apps"), str("echo"))},
	{"storage-write-tags", "storage.write(\"manifests\", \"echo\", blob, [\"app\"]) on channel 4; the blob is raw bytes",
		hx("94 04 01 94", str("manifests"), str("echo"), "a3 81 a1 78", "91", str("app"), "90")},
	{"error-reply", "an error reply [[10, 1], \"service is not available\"] on channel 1 (protocol.md §4.3)",
		hx("94 01 01 92 92 0a 01", str("service is not available"), "90")},
	{"error-generic", "storage error [[12, 2], \"apps/x: no such key\"] with trace headers",
		hx("94 05 01 92 92 0c 02", str("apps/x: no such key"), "93", zeroTrace)},
	{"stream-write", "a streaming write (chunk) of one raw argument on channel 9",
		hx("94 09 00 91", str("chunk"), "90")},
	{"stream-close", "a streaming close (choke) on channel 9",
		"94 09 02 90 90"},
	{"ping", "control ping as the first message of channel 7 (protocol.md §3.6)",
		"93 07 cd ff fd 90"},
	{"ping-reply", "the reply to ping: value [] with the zero trace headers",
		hx("94 07 00 90 93", zeroTrace)},
	{"revoke", "control revoke of channel 5 with code [1, 0], on channel 8",
		"93 08 cd ff ff 92 05 92 01 00"},
	{"emit", "logging.emit(1, \"app/test\", \"hello\", [[\"uuid\", \"abc\"]]) on channel 4 (protocol.md §6.2)",
		hx("93 04 00 94 01", str("app/test"), str("hello"), "91 92", str("uuid"), str("abc"))},
	{"wide-integers", "channel and type in non-minimal widths (uint64 channel 2, uint16 type 0), as some encoders send",
		hx("94 cf 00 00 00 00 00 00 00 02 cd 00 00 91", str("x"), "90")},
	{"str8-bin", "new-spec str8 and bin8 arguments, which a receiver must treat as raw",
		hx("94 0a 00 92 d9 03 61 62 63 c4 02 01 02 90")},
	{"extra-elements", "a frame with a fifth element, which is ignored",
		hx("95 0b 00 90 90 c0")},
	{"trace-go", "a request traced as the Go framework sends it: [false, 80|81|82, le64]",
		hx("94 0c 00 91", str("x"), "93",
			"93 c2 50", le(0x0102030405060708), "93 c2 51", le(0x1112131415161718), "93 c2 52", le(0x2122232425262728))},
	{"trace-literal", "the trace as the core sends it: full literal names, not stored",
		hx("94 0c 00 90 93",
			"93 c2", str("trace_id"), le(0x0102030405060708),
			"93 c2", str("span_id"), le(0x1112131415161718),
			"93 c2", str("parent_id"), le(0x2122232425262728))},
	{"python-headers", "two frames as the Python client sends them: stored literals and an indexed authorization, then the same headers by dynamic index (83 = newest) on the next channel",
		hx("94 01 00 91", str("a"), "94 17",
			"93 c3 50", le(7), "93 c3 51", le(8), "93 c3 52", le(0),
			"94 02 00 91", str("b"), "94 17 55 54 53")},
	{"old-server-indexes", "headers from a server older than 0.12.13.1: zero trace headers as 9-byte uint64 indexes",
		hx("94 01 00 90 93 cf 00 00 00 00 00 00 00 50 cf 00 00 00 00 00 00 00 51 cf 00 00 00 00 00 00 00 52")},
	{"custom-header", "a custom stored header with a literal name, then its reuse by index and a literal with an indexed name",
		hx("94 01 00 90 91 93 c3", str("x-request-id"), str("r1"),
			"94 02 00 90 92 53 93 c2 53", str("r2"))},
	{"resolve-reply", "a resolve reply: endpoints, version 3, and a graph cut down to uuid (protocol.md §4.2)",
		hx("94 01 00 93 91 92", str("127.0.0.1"), "cd 27 45 03",
			"81 06 93", str("uuid"), "80 82 00 92", str("value"), "80 01 92", str("error"), "80",
			"93", zeroTrace)},
}

// jsonValue renders a decoded msgpack value for index.json: raws as strings when they are
// printable UTF-8, else {"hex": ...}; map keys as strings.
func jsonValue(v any) any {
	switch x := v.(type) {
	case string:
		if isPrintable(x) {
			return x
		}
		return map[string]string{"hex": hex.EncodeToString([]byte(x))}
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonValue(e)
		}
		return out
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = jsonValue(e)
		}
		return out
	case map[any]any:
		out := map[string]any{}
		for k, e := range x {
			out[fmt.Sprint(k)] = jsonValue(e)
		}
		return out
	}
	return v
}

func isPrintable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return false
		}
	}
	return true
}

type goldenFrame struct {
	Channel uint64           `json:"channel"`
	Type    uint64           `json:"type"`
	Args    any              `json:"args"`
	ArgsHex string           `json:"args_hex"`
	Headers []map[string]any `json:"headers"`
}

type goldenEntry struct {
	Name                string        `json:"name"`
	File                string        `json:"file"`
	Description         string        `json:"description"`
	Frames              []goldenFrame `json:"frames"`
	Canonical           string        `json:"canonical"`
	CanonicalCompressed string        `json:"canonical_compressed"`
}

// decodeAll decodes every frame of a golden input with one header table.
func decodeAll(t *testing.T, input []byte) []rpc.Frame {
	t.Helper()
	fr := rpc.NewFrameReader(bytes.NewReader(input), 0)
	var out []rpc.Frame
	for {
		f, err := fr.Next()
		if err != nil {
			if err.Error() == "EOF" {
				return out
			}
			t.Fatalf("decode: %v", err)
		}
		out = append(out, f)
	}
}

func encodeAll(frames []rpc.Frame, compress bool) []byte {
	enc := rpc.HeaderEncoder{Compress: compress}
	var b []byte
	for i := range frames {
		b = rpc.AppendFrame(b, &frames[i], &enc)
	}
	return b
}

func TestGolden(t *testing.T) {
	dir := filepath.Join("testdata", "frames")
	var index []goldenEntry
	for _, g := range goldens {
		t.Run(g.name, func(t *testing.T) {
			input, err := hex.DecodeString(strings.ReplaceAll(g.wire, " ", ""))
			if err != nil {
				t.Fatalf("bad hex in the table: %v", err)
			}
			frames := decodeAll(t, input)
			canonical := encodeAll(frames, false)
			compressed := encodeAll(frames, true)
			// Canonical output must decode to the same frames: the encoder loses nothing.
			for _, out := range [][]byte{canonical, compressed} {
				again := decodeAll(t, out)
				if fmt.Sprint(again) != fmt.Sprint(frames) {
					t.Fatalf("re-encoded frames differ:\n%v\n%v", again, frames)
				}
			}
			entry := goldenEntry{
				Name: g.name, File: g.name + ".msgpack", Description: g.desc,
				Canonical: hex.EncodeToString(canonical), CanonicalCompressed: hex.EncodeToString(compressed),
			}
			for _, f := range frames {
				args, err := rpc.Unmarshal(f.Args)
				if err != nil {
					t.Fatal(err)
				}
				gf := goldenFrame{Channel: f.Channel, Type: f.Type, Args: jsonValue(args), ArgsHex: hex.EncodeToString(f.Args), Headers: []map[string]any{}}
				for _, h := range f.Headers {
					gf.Headers = append(gf.Headers, map[string]any{"name": h.Name, "value_hex": hex.EncodeToString(h.Value)})
				}
				entry.Frames = append(entry.Frames, gf)
			}
			index = append(index, entry)

			path := filepath.Join(dir, g.name)
			text := describe(g, input, entry)
			if *update {
				os.MkdirAll(dir, 0o755)
				if err := os.WriteFile(path+".msgpack", input, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path+".txt", []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			got, err := os.ReadFile(path + ".msgpack")
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(got, input) {
				t.Errorf("%s.msgpack differs from the table (run with -update)", g.name)
			}
			if txt, _ := os.ReadFile(path + ".txt"); string(txt) != text {
				t.Errorf("%s.txt is stale (run with -update)", g.name)
			}
		})
	}
	data, err := json.MarshalIndent(index, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, '\n')
	indexPath := filepath.Join(dir, "index.json")
	if *update {
		if err := os.WriteFile(indexPath, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got, err := os.ReadFile(indexPath); err != nil || !bytes.Equal(got, data) {
		t.Errorf("index.json is missing or stale (run with -update): %v", err)
	}
}

func describe(g golden, input []byte, e goldenEntry) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n%s\n\ninput (%d bytes):\n%s\n", g.name, g.desc, len(input), dump(input))
	for i, f := range e.Frames {
		args, _ := json.Marshal(f.Args)
		fmt.Fprintf(&b, "\nframe %d: channel %d, type %d, args %s\n", i+1, f.Channel, f.Type, args)
		for _, h := range f.Headers {
			fmt.Fprintf(&b, "  header %s = %s\n", h["name"], h["value_hex"])
		}
	}
	can, _ := hex.DecodeString(e.Canonical)
	fmt.Fprintf(&b, "\ncanonical re-encoding (%d bytes):\n%s\n", len(can), dump(can))
	return b.String()
}

func dump(p []byte) string {
	var b strings.Builder
	for i := 0; i < len(p); i += 16 {
		end := min(i+16, len(p))
		fmt.Fprintf(&b, "  % x\n", p[i:end])
	}
	return b.String()
}
