package rpc_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync/atomic"
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

// TestShutdownWithStuckPeer: a peer that sends requests but never reads the replies fills
// the server's buffers; stopping the server must still finish, within the shutdown grace.
func TestShutdownWithStuckPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := rpc.NewServer(rpctest.EchoDispatcher(), rpc.SessionConfig{MaxPending: 64 << 10})
	served := make(chan error, 1) // Serve's result
	go func() { served <- srv.Serve(ctx, ln) }()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stream, _ := rpctest.EchoGraph.MethodByName("stream")
	chunk := bytes.Repeat([]byte("x"), 32<<10)
	wrote := make(chan struct{}) // closed when the writer goroutine gives up
	var sent atomic.Int64
	go func() {
		defer close(wrote)
		c.SetWriteDeadline(time.Now().Add(20 * time.Second))
		var enc rpc.HeaderEncoder
		args, _ := rpc.AppendArgs(nil, chunk)
		b := rpc.AppendFrame(nil, &rpc.Frame{Channel: 1, Type: stream.ID}, &enc)
		if _, err := c.Write(b); err != nil {
			return
		}
		for {
			n, err := c.Write(rpc.AppendFrame(nil, &rpc.Frame{Channel: 1, Type: rpc.Write, Args: args}, &enc))
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	// Wait until the server is stuck: its buffers are full, so our writes stop progressing.
	deadline := time.Now().Add(15 * time.Second)
	for last := int64(-1); ; {
		time.Sleep(200 * time.Millisecond)
		now := sent.Load()
		if now == last && now > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server never stopped reading")
		}
		last = now
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return with a peer that stopped reading")
	}
	c.Close()
	<-wrote
}

// TestOpenBlockedByPeerDoesNotHoldTheSession: a peer that stops reading makes Open block
// while it queues the first frame; meanwhile the rest of the session must go on
// (abandoning another channel, the reader delivering replies, closing), or an owner that
// abandons a timed-out request would wait for the stuck peer forever (it did: the node
// deadlocked on a worker that stopped reading).
func TestOpenBlockedByPeerDoesNotHoldTheSession(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1) // the one connection, never read
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	defer peer.Close()
	conn := rpc.NewConn(nc, rpctest.EchoGraph, rpc.DialConfig{})
	defer conn.Close()

	first, err := conn.Call(testCtx(t), "stream")
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 1<<20)
	opened := make(chan error, 1) // the blocked Open's result, once the connection closes
	go func() {
		// Fill the writer (the peer reads nothing) until an Open blocks.
		for {
			if _, err := conn.Call(context.Background(), "ping", big); err != nil {
				opened <- err
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond) // let the opener get stuck; the test asserts no timing
	done := make(chan struct{})        // closed when Abandon returned
	go func() {
		first.Abandon()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Abandon waited for the blocked Open")
	}
	conn.Close()
	select {
	case <-opened:
	case <-time.After(10 * time.Second):
		t.Fatal("the blocked Open did not fail when the connection closed")
	}
}
