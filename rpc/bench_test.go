package rpc_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/rpc/rpctest"
)

// typicalFrame is a storage.read request with the headers the Python client sends.
func typicalFrame() *rpc.Frame {
	args, _ := rpc.AppendArgs(nil, "manifests", "echo")
	return &rpc.Frame{Channel: 7, Type: 0, Args: args, Headers: []rpc.Header{{Name: "authorization", Value: []byte("")}}}
}

func BenchmarkEncodeFrame(b *testing.B) {
	f := typicalFrame()
	var enc rpc.HeaderEncoder
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = rpc.AppendFrame(buf[:0], f, &enc)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecodeFrame(b *testing.B) {
	var enc rpc.HeaderEncoder
	buf := rpc.AppendFrame(nil, typicalFrame(), &enc)
	var table rpc.HeaderTable
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := rpc.DecodeFrame(buf, &table); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEcho measures small request/response pairs through a full session over
// loopback TCP: one connection, many concurrent channels (b.RunParallel goroutines, each
// with one call in flight). ns/op is per pair, so pairs/s = 1e9 / ns/op.
func BenchmarkEcho(b *testing.B) {
	for _, par := range []int{1, 16, 64} {
		b.Run("concurrency="+itoa(par), func(b *testing.B) {
			ep := rpctest.Serve(b, rpctest.EchoDispatcher(), rpc.SessionConfig{})
			c, err := rpc.Dial(context.Background(), []rpc.Endpoint{ep}, rpctest.EchoGraph, rpc.DialConfig{})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ping, _ := rpctest.EchoGraph.MethodByName("ping")
			args, _ := rpc.AppendArgs(nil, "hello, cocaine")
			ctx := context.Background()
			b.ReportAllocs()
			b.SetParallelism(par)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ch, err := c.CallRaw(ctx, ping, args)
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := ch.Get(ctx); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
