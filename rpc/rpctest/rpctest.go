// Package rpctest provides helpers for testing code that speaks the Cocaine wire: an echo
// service and a server on a loopback listener that stops when the test ends.
package rpctest

import (
	"context"
	"net"
	"testing"

	"github.com/cocaine/cocaine/rpc"
)

// EchoGraph is a small test protocol: ping echoes its args as a value; stream echoes every
// chunk the caller writes and closes when the caller closes; mute never answers.
var EchoGraph = rpc.ServiceGraph(1,
	rpc.Method{Name: "ping", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "stream", Dispatch: rpc.Streaming, Upstream: rpc.Streaming},
	rpc.Method{Name: "mute", Dispatch: rpc.Terminal, Upstream: rpc.Terminal},
	rpc.Method{Name: "fail", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
)

// EchoDispatcher serves EchoGraph.
func EchoDispatcher() *rpc.Dispatcher {
	d := rpc.NewDispatcher(EchoGraph, nil, nil)
	d.MustHandle("ping", func(ctx context.Context, req *rpc.Request) error {
		return req.Tx.SendRaw(rpc.Value, rpc.Raw(req.Args))
	})
	d.MustHandle("stream", func(ctx context.Context, req *rpc.Request) error {
		req.Receive(echoStream{req.Tx})
		return nil
	})
	d.MustHandle("mute", func(ctx context.Context, req *rpc.Request) error { return nil })
	d.MustHandle("fail", func(ctx context.Context, req *rpc.Request) error {
		var code int
		var msg string
		if err := req.Args.Scan(&code, &msg); err != nil {
			return err
		}
		return rpc.NewError(rpc.CategoryGeneric, code, msg)
	})
	return d
}

type echoStream struct{ tx *rpc.Tx }

func (e echoStream) Receive(m rpc.Message, last bool) error {
	return e.tx.SendRaw(m.Type, rpc.Raw(m.Args))
}

func (e echoStream) Discard(error) {}

// Serve serves d on a fresh 127.0.0.1 port until the test ends and returns its endpoint.
func Serve(t testing.TB, d *rpc.Dispatcher, cfg rpc.SessionConfig) rpc.Endpoint {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := rpc.NewServer(d, cfg)
	done := make(chan error, 1) // Serve's result, read once in cleanup
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	addr := ln.Addr().(*net.TCPAddr)
	return rpc.Endpoint{Host: addr.IP.String(), Port: uint16(addr.Port)}
}
