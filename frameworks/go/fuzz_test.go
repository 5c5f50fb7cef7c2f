package cocaine_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	cocaine "github.com/cocaine/cocaine/frameworks/go"
	"github.com/cocaine/cocaine/rpc"
)

func frameBytes(channel, typ uint64, args ...any) []byte {
	a, _ := rpc.AppendArgs(nil, args...)
	var enc rpc.HeaderEncoder
	return rpc.AppendFrame(nil, &rpc.Frame{Channel: channel, Type: typ, Args: a}, &enc)
}

// FuzzWorker feeds what a node might send (any bytes after the handshake) to a worker
// with an echo handler. The worker must never panic, and Run must return once the
// node's side closes.
func FuzzWorker(f *testing.F) {
	f.Add(append(frameBytes(2, 0, "echo"), append(frameBytes(2, 0, "chunk"), frameBytes(2, 2)...)...))
	f.Add(frameBytes(1, 1, 14, "slave is sealing"))
	f.Add(frameBytes(1, 0))
	f.Add(append(frameBytes(3, 0, "missing"), frameBytes(2, 0, "late")...))
	f.Add(frameBytes(2, 0, 42))
	f.Add(append(frameBytes(5, 0, "echo"), frameBytes(5, 1, []any{42, 1}, "client error")...))
	f.Add([]byte{0x94, 0xc1})
	f.Fuzz(func(t *testing.T, input []byte) {
		ep := filepath.Join(t.TempDir(), "w.sock")
		ln, err := net.Listen("unix", ep)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		w, err := cocaine.NewWorkerConfig(cocaine.WorkerConfig{UUID: "u", Endpoint: ep, Protocol: 1, HeartbeatInterval: time.Hour}, nil)
		if err != nil {
			t.Fatal(err)
		}
		w.On("echo", func(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
			for {
				c, err := req.Read(ctx)
				if err != nil {
					return
				}
				resp.Write(c)
			}
		})
		conn, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1) // Run's result
		go func() { done <- w.Run(context.Background()) }()
		fr := rpc.NewFrameReader(conn, 0)
		if _, err := fr.Next(); err != nil { // the handshake
			t.Fatal(err)
		}
		conn.Write(input)
		conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		for {
			if _, err := fr.Next(); err != nil {
				break
			}
		}
		conn.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after the node closed the connection")
		}
	})
}
