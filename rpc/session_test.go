package rpc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/rpc/rpctest"
)

func dialEcho(t *testing.T) *rpc.Conn {
	t.Helper()
	ep := rpctest.Serve(t, rpctest.EchoDispatcher(), rpc.SessionConfig{})
	c, err := rpc.Dial(context.Background(), []rpc.Endpoint{ep}, rpctest.EchoGraph, rpc.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestEchoPrimitive(t *testing.T) {
	c := dialEcho(t)
	ctx := testCtx(t)
	ch, err := c.Call(ctx, "ping", "hello", uint64(42))
	if err != nil {
		t.Fatal(err)
	}
	args, err := ch.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var s string
	var n uint64
	if err := args.Scan(&s, &n); err != nil {
		t.Fatal(err)
	}
	if s != "hello" || n != 42 {
		t.Fatalf("got %q %d", s, n)
	}
	if _, err := ch.Recv(ctx); !errors.Is(err, rpc.ErrChannelClosed) {
		t.Fatalf("after the value: %v, want ErrChannelClosed", err)
	}
}

func TestEchoStreamHalfClose(t *testing.T) {
	c := dialEcho(t)
	ctx := testCtx(t)
	ch, err := c.Call(ctx, "stream")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := ch.Write(i); err != nil {
			t.Fatal(err)
		}
		m, err := ch.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var v int
		if err := m.Args.Scan(&v); err != nil || v != i || m.Name != "write" {
			t.Fatalf("chunk %d: %v %d %q", i, err, v, m.Name)
		}
	}
	if err := ch.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ch.Write(9); !errors.Is(err, rpc.ErrClosedUpstream) {
		t.Fatalf("write after close: %v", err)
	}
	m, err := ch.Recv(ctx)
	if err != nil || m.Name != "close" {
		t.Fatalf("want close, got %v %q", err, m.Name)
	}
}

func TestErrorReply(t *testing.T) {
	c := dialEcho(t)
	ctx := testCtx(t)
	ch, err := c.Call(ctx, "fail", 2, "no such thing")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ch.Get(ctx)
	var e *rpc.Error
	if !errors.As(err, &e) || e.Category != rpc.CategoryGeneric || e.Code != 2 || e.Message != "no such thing" {
		t.Fatalf("got %#v", err)
	}
}
