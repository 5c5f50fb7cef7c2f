package cocaine_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/cocaine/cocaine/rpc"
)

// TestGoldenFrames: the framework speaks the wire through rpc; this is the
// cross-language conformance suite every framework runs: decode each golden frame file
// and re-encode it byte for byte (plain and compressed headers).
func TestGoldenFrames(t *testing.T) {
	dir := filepath.Join("..", "..", "rpc", "testdata", "frames")
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var index []struct {
		Name   string `json:"name"`
		File   string `json:"file"`
		Frames []struct {
			Channel uint64 `json:"channel"`
			Type    uint64 `json:"type"`
			ArgsHex string `json:"args_hex"`
			Headers []struct {
				Name     string `json:"name"`
				ValueHex string `json:"value_hex"`
			} `json:"headers"`
		} `json:"frames"`
		Canonical           string `json:"canonical"`
		CanonicalCompressed string `json:"canonical_compressed"`
	}
	if err := json.Unmarshal(b, &index); err != nil {
		t.Fatal(err)
	}
	if len(index) == 0 {
		t.Fatal("no golden frames")
	}
	for _, g := range index {
		t.Run(g.Name, func(t *testing.T) {
			input, err := os.ReadFile(filepath.Join(dir, g.File))
			if err != nil {
				t.Fatal(err)
			}
			fr := rpc.NewFrameReader(bytes.NewReader(input), 0)
			var frames []rpc.Frame
			for {
				f, err := fr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				frames = append(frames, f)
			}
			if len(frames) != len(g.Frames) {
				t.Fatalf("%d frames, index says %d", len(frames), len(g.Frames))
			}
			for i, f := range frames {
				w := g.Frames[i]
				if f.Channel != w.Channel || f.Type != w.Type || hex.EncodeToString(f.Args) != w.ArgsHex || len(f.Headers) != len(w.Headers) {
					t.Fatalf("frame %d: %d %d %x %v", i, f.Channel, f.Type, f.Args, f.Headers)
				}
				for j, h := range f.Headers {
					if h.Name != w.Headers[j].Name || hex.EncodeToString(h.Value) != w.Headers[j].ValueHex {
						t.Fatalf("frame %d header %d: %s=%x", i, j, h.Name, h.Value)
					}
				}
			}
			for _, c := range []struct {
				compress bool
				want     string
			}{{false, g.Canonical}, {true, g.CanonicalCompressed}} {
				enc := rpc.HeaderEncoder{Compress: c.compress}
				var out []byte
				for i := range frames {
					out = rpc.AppendFrame(out, &frames[i], &enc)
				}
				if hex.EncodeToString(out) != c.want {
					t.Fatalf("re-encoded (compress %v):\n%x\nwant\n%s", c.compress, out, c.want)
				}
			}
		})
	}
}
