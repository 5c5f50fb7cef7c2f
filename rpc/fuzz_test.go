package rpc_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/rpc/rpctest"
)

// Every fuzz target starts from the golden frames; the corpus under testdata/fuzz adds
// hostile inputs (huge length prefixes, deep nesting) and is replayed by plain go test.
// Run one for longer with: go test ./rpc -run '^$' -fuzz FuzzFrameReader -fuzztime 60s

func addGoldenSeeds(f *testing.F, extra func(in []byte)) {
	for _, g := range goldens {
		in, err := hex.DecodeString(strings.ReplaceAll(g.wire, " ", ""))
		if err != nil {
			f.Fatal(err)
		}
		extra(in)
	}
}

// readAllFrames decodes frames until the input ends or fails.
func readAllFrames(r io.Reader, max int) ([]rpc.Frame, error) {
	fr := rpc.NewFrameReader(r, max)
	var out []rpc.Frame
	for {
		f, err := fr.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		out = append(out, f)
	}
}

// splitReader returns its input in two reads, split at a given offset.
type splitReader struct {
	parts [][]byte
}

func (s *splitReader) Read(p []byte) (int, error) {
	for len(s.parts) > 0 && len(s.parts[0]) == 0 {
		s.parts = s.parts[1:]
	}
	if len(s.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.parts[0])
	s.parts[0] = s.parts[0][n:]
	return n, nil
}

// FuzzFrameReader feeds the frame reader a stream whole and split at a fuzzer-chosen
// offset: both must give the same frames and the same verdict, never panic, and never
// hold more than the limit.
func FuzzFrameReader(f *testing.F) {
	addGoldenSeeds(f, func(in []byte) { f.Add(in, uint16(len(in)/2)) })
	f.Fuzz(func(t *testing.T, in []byte, split uint16) {
		const limit = 4096
		whole, errWhole := readAllFrames(bytes.NewReader(in), limit)
		at := int(split) % (len(in) + 1)
		parts, errSplit := readAllFrames(&splitReader{parts: [][]byte{in[:at], in[at:]}}, limit)
		if (errWhole == nil) != (errSplit == nil) {
			t.Fatalf("whole: %v, split at %d: %v", errWhole, at, errSplit)
		}
		if len(whole) != len(parts) {
			t.Fatalf("whole gave %d frames, split %d", len(whole), len(parts))
		}
		for i := range whole {
			if whole[i].Channel != parts[i].Channel || whole[i].Type != parts[i].Type ||
				!bytes.Equal(whole[i].Args, parts[i].Args) || len(whole[i].Headers) != len(parts[i].Headers) {
				t.Fatalf("frame %d differs", i)
			}
			// Decode(Encode(m)) == m.
			enc := rpc.HeaderEncoder{Compress: i%2 == 1}
			out := rpc.AppendFrame(nil, &whole[i], &enc)
			var table rpc.HeaderTable
			again, err := rpc.DecodeFrame(out, &table)
			if err != nil {
				t.Fatalf("re-encoded frame does not decode: %v", err)
			}
			if again.Channel != whole[i].Channel || !bytes.Equal(again.Args, whole[i].Args) || len(again.Headers) != len(whole[i].Headers) {
				t.Fatalf("round trip changed frame %d", i)
			}
		}
	})
}

// FuzzHeaders decodes header lists through one table, frame after frame.
func FuzzHeaders(f *testing.F) {
	f.Add([]byte{0x91, 0x17})
	f.Add([]byte{0x92, 0x93, 0xc3, 0xa1, 'x', 0xa1, 'y', 0x53})
	f.Add([]byte{0x91, 0xcf, 0, 0, 0, 0, 0, 0, 0, 0x50})
	f.Fuzz(func(t *testing.T, in []byte) {
		var table rpc.HeaderTable
		d := rpc.NewDecoder(in)
		for d.Remaining() > 0 {
			hs, err := table.DecodeHeaders(d, nil)
			if err != nil {
				if !errors.Is(err, rpc.ErrHPACK) && !errors.Is(err, rpc.ErrParse) && !errors.Is(err, rpc.ErrInvalidArgument) {
					t.Fatalf("unexpected error class: %v", err)
				}
				return
			}
			// Every decoded header survives a compressed round trip through a fresh table pair.
			var enc rpc.HeaderEncoder
			enc.Compress = true
			var b []byte
			b = rpc.AppendArrayHeader(b, len(hs))
			for _, h := range hs {
				b = enc.AppendHeader(b, h)
			}
			var peer rpc.HeaderTable
			again, err := peer.DecodeHeaders(rpc.NewDecoder(b), nil)
			if err != nil || len(again) != len(hs) {
				t.Fatalf("round trip: %v", err)
			}
			for i := range hs {
				if again[i].Name != hs[i].Name || !bytes.Equal(again[i].Value, hs[i].Value) {
					t.Fatalf("header %d changed: %q=%x -> %q=%x", i, hs[i].Name, hs[i].Value, again[i].Name, again[i].Value)
				}
			}
		}
	})
}

// FuzzGraph decodes graphs; an accepted graph must re-encode to bytes that decode equal.
func FuzzGraph(f *testing.F) {
	b, _ := rpc.LocatorGraph.AppendMsgpack(nil)
	f.Add(b)
	b, _ = rpctest.EchoGraph.AppendMsgpack(nil)
	f.Add(b)
	f.Fuzz(func(t *testing.T, in []byte) {
		g, err := rpc.DecodeGraph(rpc.NewDecoder(in), 1)
		if err != nil {
			return
		}
		out, _ := g.AppendMsgpack(nil)
		g2, err := rpc.DecodeGraph(rpc.NewDecoder(out), 1)
		if err != nil {
			t.Fatalf("re-encoded graph does not decode: %v", err)
		}
		out2, _ := g2.AppendMsgpack(nil)
		if !bytes.Equal(out, out2) {
			t.Fatal("graph encoding is not stable")
		}
	})
}

// FuzzDispatcher sends arbitrary bytes to a live session serving the echo service. The
// session may answer or close the connection, but it must not panic or hang, and every
// byte it sends must be a well-formed frame.
func FuzzDispatcher(f *testing.F) {
	addGoldenSeeds(f, func(in []byte) { f.Add(in) })
	f.Add([]byte("\x94\x01\x00\x91\xa5hello\x90\x94\x02\x01\x90\x90\x94\x02\x00\x91\x01\x90\x94\x02\x02\x90\x90"))
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		s := rpc.NewSession(server, rpc.SessionConfig{Dispatcher: rpctest.EchoDispatcher(), Strict: true, MaxFrameSize: 1 << 16})
		runDone := make(chan error, 1) // Run's result
		go func() { runDone <- s.Run(context.Background()) }()

		outDone := make(chan []byte, 1) // everything the server wrote
		go func() {
			out, _ := io.ReadAll(client)
			outDone <- out
		}()
		client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		client.Write(in)
		// Let the session finish, then close: Run must return.
		s.Close()
		select {
		case <-runDone:
		case <-time.After(10 * time.Second):
			t.Fatal("session did not stop")
		}
		client.Close()
		out := <-outDone
		frames, err := readAllFrames(bytes.NewReader(out), 0)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("the server wrote a malformed frame: %v", err)
		}
		for _, fr := range frames {
			if fr.Type > 2 || len(fr.Headers) != 3 {
				t.Fatalf("unexpected reply %+v", fr)
			}
		}
	})
}
