package rpc_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/rpc/rpctest"
)

// These tests talk to a real server (rpctest's echo service: 0 ping, 1 stream, 2 mute,
// 3 fail, then the control ids) over raw TCP connections, writing the bytes of
// protocol.md and comparing the bytes that come back.

// wireZeroTrace is the headers element of every reply on an untraced channel: the three
// uncompressed trace literals with 8 zero bytes each (protocol.md §4.2).
const wireZeroTrace = `93` +
	` 93 c2 a8 "trace_id" a8 00 00 00 00 00 00 00 00` +
	` 93 c2 a7 "span_id" a8 00 00 00 00 00 00 00 00` +
	` 93 c2 a9 "parent_id" a8 00 00 00 00 00 00 00 00`

// wireTrace is the headers element of a reply on a traced channel.
func wireTrace(trace, span, parent uint64) []byte {
	return specCat(`93`,
		`93 c2 a8 "trace_id" a8`, wireLE(trace),
		`93 c2 a7 "span_id" a8`, wireLE(span),
		`93 c2 a9 "parent_id" a8`, wireLE(parent))
}

func wireLE(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// wireEventually polls cond until it returns nil, failing t after timeout.
func wireEventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("after %v: %v", timeout, err)
			return
		}
		<-tick.C
	}
}

// wireLeakCheck fails t if it ends with more goroutines than it started with. Register it
// first, so that it runs after every other cleanup (servers, connections).
func wireLeakCheck(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		wireEventually(t, 5*time.Second, func() error {
			if n := runtime.NumGoroutine(); n > before {
				var b strings.Builder
				pprof.Lookup("goroutine").WriteTo(&b, 1)
				return fmt.Errorf("%d goroutines, %d before the test:\n%s", n, before, b.String())
			}
			return nil
		})
	})
}

func wireCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wireServe(t *testing.T) rpc.Endpoint {
	t.Helper()
	return rpctest.Serve(t, rpctest.EchoDispatcher(), rpc.SessionConfig{})
}

// wireConn is a raw client connection.
type wireConn struct {
	t  *testing.T
	c  net.Conn
	fr *rpc.FrameReader
}

func wireDial(t *testing.T, ep rpc.Endpoint) *wireConn {
	t.Helper()
	c, err := net.Dial("tcp", ep.String())
	if err != nil {
		t.Fatal(err)
	}
	// A bound for a broken server, so a test fails instead of hanging; nothing here
	// depends on how fast the server is.
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &wireConn{t: t, c: c, fr: rpc.NewFrameReader(c, 0)}
}

func (w *wireConn) send(parts ...any) {
	w.t.Helper()
	if _, err := w.c.Write(specCat(parts...)); err != nil {
		w.t.Fatalf("write: %v", err)
	}
}

// next returns the bytes of the next frame.
func (w *wireConn) next() []byte {
	w.t.Helper()
	raw, err := w.fr.NextRaw()
	if err != nil {
		w.t.Fatalf("reading a reply: %v", err)
	}
	return raw
}

// expect reads the next frame and compares it with the given bytes.
func (w *wireConn) expect(parts ...any) {
	w.t.Helper()
	want := specCat(parts...)
	if got := w.next(); !bytes.Equal(got, want) {
		w.t.Fatalf("reply\n% x\nwant\n% x", got, want)
	}
}

// expectClosed checks that the server closed the connection without sending a byte.
func (w *wireConn) expectClosed() {
	w.t.Helper()
	raw, err := w.fr.NextRaw()
	if err != io.EOF {
		w.t.Fatalf("want the connection closed without a reply (EOF), got % x, %v", raw, err)
	}
}

// ping checks that the connection works: channel ch echoes a value.
func (w *wireConn) ping(ch string) {
	w.t.Helper()
	w.send(`93`, ch, `00 91 a2 "ok"`)
	w.expect(`94`, ch, `00 91 a2 "ok"`, wireZeroTrace)
}

func TestWireFirstChannelID(t *testing.T) {
	wireLeakCheck(t)
	ep := wireServe(t)
	for _, tc := range []struct{ name, first, second string }{
		{"python starts at 1", `01`, `02`},
		{"go starts at 2", `02`, `03`},
		{"python logger uses 999999", `ce 00 0f 42 3f`, `ce 00 0f 42 40`},
		{"gaps are allowed", `05`, `cd 10 00`},
		{"64-bit ids", `cf 00 00 00 01 00 00 00 00`, `cf ff ff ff ff ff ff ff ff`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := wireDial(t, ep)
			w.ping(tc.first)
			w.ping(tc.second)
		})
	}
}

// Many frames in one write, and one frame in many writes.
func TestWireFraming(t *testing.T) {
	wireLeakCheck(t)
	ep := wireServe(t)
	t.Run("pipelined", func(t *testing.T) {
		w := wireDial(t, ep)
		w.send(`93 01 00 91 01`, `94 02 00 91 02 90`, `95 03 00 91 03 90 c0`)
		for _, ch := range []string{`01`, `02`, `03`} {
			w.expect(`94`, ch, `00 91`, ch, wireZeroTrace)
		}
	})
	t.Run("one byte per write", func(t *testing.T) {
		w := wireDial(t, ep)
		if tc, ok := w.c.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		frame := specCat(`94 01 00 92 a5 "hello" cd 01 00 93`,
			`93 c2 50 a8`, wireLE(7), `93 c2 51 a8`, wireLE(8), `93 c2 52 a8`, wireLE(9))
		for _, b := range frame {
			w.send([]byte{b})
		}
		w.expect(`94 01 00 92 a5 "hello" cd 01 00`, wireTrace(7, 8, 9))
	})
	t.Run("str8 and bin are accepted", func(t *testing.T) {
		w := wireDial(t, ep)
		w.send(`93 01 03 92 02 d9 03 "msg"`)
		w.expect(`94 01 01 92 92 0c 02 a3 "msg"`, wireZeroTrace) // and we answer in raw
		w.send(`93 02 03 92 d3 00 00 00 00 00 00 00 02 c4 03 "msg"`)
		w.expect(`94 02 01 92 92 0c 02 a3 "msg"`, wireZeroTrace)
	})
}

// protocol.md §3.6: ping → value [] with the three trace headers.
func TestWirePing(t *testing.T) {
	wireLeakCheck(t)
	ep := wireServe(t)
	w := wireDial(t, ep)
	w.send(`93 07 cd ff fd 90`)
	w.expect(`94 07 00 90`, wireZeroTrace)
	w.send(`94 08 cd ff fd 90 90`)
	w.expect(`94 08 00 90`, wireZeroTrace)
	// the whole reply, byte for byte as §3.6 and §4.2 write it
	w.send(`93 09 cd ff fd 90`)
	want := specBytes(`94 09 00 90 93 93 c2 a8 74 72 61 63 65 5f 69 64 a8 00 00 00 00 00 00 00 00` +
		` 93 c2 a7 73 70 61 6e 5f 69 64 a8 00 00 00 00 00 00 00 00` +
		` 93 c2 a9 70 61 72 65 6e 74 5f 69 64 a8 00 00 00 00 00 00 00 00`)
	if got := w.next(); !bytes.Equal(got, want) {
		t.Fatalf("got % x\nwant % x", got, want)
	}
	w.ping(`0a`)
}

// Every protocol violation closes the connection without a reply (protocol.md §2.6),
// and only that connection.
func TestWireProtocolViolations(t *testing.T) {
	wireLeakCheck(t)
	ep := wireServe(t)
	trace3 := func(trace, span []byte) []byte { // a headers array with the three trace ids
		return specCat(`93 93 c2 50`, rpc.AppendBytes(nil, trace), `93 c2 51`, rpc.AppendBytes(nil, span),
			`93 c2 52 a8`, wireLE(0))
	}
	type step struct{ send, reply []byte } // reply nil: none expected
	openStream := step{specBytes(`93 03 01 90`), nil}
	for _, tc := range []struct {
		name   string
		before []step
		bad    []byte
	}{
		{"channel id 0", nil, specBytes(`93 00 00 90`)},
		{"channel id 0 for ping", nil, specBytes(`93 00 cd ff fd 90`)},
		{"decreasing channel id", []step{{specBytes(`93 05 00 90`), specCat(`94 05 00 90`, wireZeroTrace)}},
			specBytes(`93 03 00 90`)},
		{"reused closed channel id", []step{{specBytes(`93 05 00 90`), specCat(`94 05 00 90`, wireZeroTrace)}},
			specBytes(`93 05 00 90`)},
		{"reused id of a mute call", []step{{specBytes(`93 05 02 90`), nil}}, specBytes(`93 05 02 90`)},
		{"reused id of a ping", []step{{specBytes(`93 05 cd ff fd 90`), specCat(`94 05 00 90`, wireZeroTrace)}},
			specBytes(`93 05 cd ff fd 90`)},
		{"message after the stream's close", []step{openStream,
			{specBytes(`93 03 02 90`), specCat(`94 03 02 90`, wireZeroTrace)}},
			specBytes(`93 03 00 91 01`)},
		{"message on a revoked channel", []step{openStream,
			{specBytes(`93 03 00 91 01`), specCat(`94 03 00 91 01`, wireZeroTrace)},
			{specBytes(`93 08 cd ff ff 92 03 92 01 00`), specCat(`94 08 00 90`, wireZeroTrace)}},
			specBytes(`93 03 00 91 02`)},
		{"unknown method id 4", nil, specBytes(`93 01 04 90`)},
		{"unknown method id 100", nil, specBytes(`93 01 64 90`)},
		{"unknown control id 65531", nil, specBytes(`93 01 cd ff fb 90`)},
		{"settings", nil, specBytes(`93 01 cd ff fe 90`)},
		{"goaway", nil, specBytes(`93 01 cd ff fc 91 92 01 00`)},
		{"revoke without args", nil, specBytes(`93 01 cd ff ff 90`)},
		{"revoke with a negative channel", nil, specBytes(`93 01 cd ff ff 92 ff 92 01 00`)},
		{"ping inside an open stream", []step{openStream}, specBytes(`93 03 cd ff fd 90`)},
		{"revoke inside an open stream", []step{openStream}, specBytes(`93 03 cd ff ff 92 03 92 01 00`)},
		{"unknown type inside an open stream", []step{openStream}, specBytes(`93 03 05 90`)},
		{"args of the wrong type", nil, specBytes(`93 01 03 92 a1 "x" a1 "y"`)},
		{"too few args", nil, specBytes(`93 01 03 91 02`)},
		{"nil for a string arg", nil, specBytes(`93 01 03 92 02 c0`)},
		{"garbage: 0xc1", nil, specBytes(`c1`)},
		{"garbage: HTTP", nil, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"garbage: a map", nil, specBytes(`81 01 02`)},
		{"garbage: 2 elements", nil, specBytes(`92 01 00`)},
		{"string channel", nil, specBytes(`93 a1 "1" 00 90`)},
		{"negative channel", nil, specBytes(`93 ff 00 90`)},
		{"nil args", nil, specBytes(`93 01 00 c0`)},
		{"headers not an array", nil, specBytes(`94 01 00 90 c0`)},
		{"header index 0", nil, specBytes(`94 01 00 90 91 00`)},
		{"header index past the table", nil, specBytes(`94 01 00 90 91 53`)},
		{"header store flag 1", nil, specBytes(`94 01 00 90 91 93 01 a1 "a" a1 "b"`)},
		{"header value not raw", nil, specBytes(`94 01 00 90 91 93 c2 a1 "a" 01`)},
		{"header literal of 2", nil, specBytes(`94 01 00 90 91 92 c2 a1 "a"`)},
		{"trace id of 4 bytes", nil, specCat(`94 01 00 90`, trace3([]byte{1, 2, 3, 4}, wireLE(1)))},
		{"trace 0 with a span", nil, specCat(`94 01 00 90`, trace3(wireLE(0), wireLE(1)))},
		{"trace without a span", nil, specCat(`94 01 00 90`, trace3(wireLE(1), wireLE(0)))},
		{"trace_bit 2", nil, specBytes(`94 01 00 90 91 93 c2 a9 "trace_bit" a1 "2"`)},
		{"4 GiB raw", nil, specBytes(`db ff ff ff ff`)},
		{"4 GiB raw in args", nil, specBytes(`94 01 00 91 db ff ff ff ff`)},
		{"4 GiB bin", nil, specBytes(`93 01 00 91 c6 ff ff ff ff`)},
		{"4 G elements", nil, specBytes(`dd ff ff ff ff`)},
		{"4 G pairs", nil, specBytes(`93 01 00 91 df ff ff ff ff`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bystander := wireDial(t, ep)
			bystander.send(`93 01 01 90`) // an open stream that must survive
			bystander.ping(`02`)
			victim := wireDial(t, ep)
			for _, s := range tc.before {
				victim.send(s.send)
				if s.reply != nil {
					victim.expect(s.reply)
				}
			}
			victim.send(tc.bad)
			victim.expectClosed()

			bystander.send(`93 01 00 91 a2 "ok"`)
			bystander.expect(`94 01 00 91 a2 "ok"`, wireZeroTrace)
			bystander.ping(`03`)
		})
	}
}

// revoke (protocol.md §3.6) ends the peer's side of a channel; the reply is value [] on
// the revoke's own channel, whether or not the revoked one existed.
func TestWireRevoke(t *testing.T) {
	wireLeakCheck(t)
	ep := wireServe(t)
	w := wireDial(t, ep)
	w.send(`93 03 01 90`) // stream on 3
	w.send(`93 03 00 91 a1 "a"`)
	w.expect(`94 03 00 91 a1 "a"`, wireZeroTrace)
	w.send(`93 05 01 90`) // stream on 5, left alone
	w.send(`93 08 cd ff ff 92 03 92 01 00`)
	w.expect(`94 08 00 90`, wireZeroTrace)
	w.send(`93 09 cd ff ff 92 63 92 01 00`) // channel 99 is unknown: still a value
	w.expect(`94 09 00 90`, wireZeroTrace)
	w.send(`93 05 00 91 a1 "b"`) // the other stream goes on
	w.expect(`94 05 00 91 a1 "b"`, wireZeroTrace)
	w.send(`93 05 02 90`)
	w.expect(`94 05 02 90`, wireZeroTrace)
	w.send(`93 03 00 91 a1 "c"`) // the revoked one is gone for good
	w.expectClosed()
}

// Tracing headers of a channel's first message come back on every reply of that channel
// (protocol.md §5.4), in whichever form the client sent them.
func TestWireTrace(t *testing.T) {
	wireLeakCheck(t)
	ep := wireServe(t)
	const tr, sp, pa = 0x0102030405060708, 0x1112131415161718, 0x2122232425262728
	goStyle := specCat(`93 93 c2 50 a8`, wireLE(tr), `93 c2 51 a8`, wireLE(sp), `93 c2 52 a8`, wireLE(pa))

	t.Run("go style", func(t *testing.T) {
		w := wireDial(t, ep)
		w.send(`94 01 00 91 a1 "x"`, goStyle)
		w.expect(`94 01 00 91 a1 "x"`, wireTrace(tr, sp, pa))
		w.send(`93 02 00 91 a1 "y"`) // the next channel is untraced
		w.expect(`94 02 00 91 a1 "y"`, wireZeroTrace)
	})
	t.Run("spec literal names", func(t *testing.T) {
		w := wireDial(t, ep)
		w.send(`94 01 00 91 a1 "x"`, wireTrace(tr, sp, pa))
		w.expect(`94 01 00 91 a1 "x"`, wireTrace(tr, sp, pa))
	})
	t.Run("python style", func(t *testing.T) {
		w := wireDial(t, ep)
		w.send(`94 01 00 91 a1 "x" 94`,
			`93 c3 50 a8`, wireLE(tr), `93 c3 51 a8`, wireLE(sp), `93 c3 52 a8`, wireLE(pa), `17`)
		w.expect(`94 01 00 91 a1 "x"`, wireTrace(tr, sp, pa))
		w.send(`94 02 00 91 a1 "y" 94 55 54 53 17`) // the same, by dynamic index
		w.expect(`94 02 00 91 a1 "y"`, wireTrace(tr, sp, pa))
		w.send(`94 04 00 91 a1 "z" 93 53 55 54`) // any order
		w.expect(`94 04 00 91 a1 "z"`, wireTrace(tr, sp, pa))
		w.send(`94 05 00 91 a1 "w" 92 55 54`) // one missing: untraced
		w.expect(`94 05 00 91 a1 "w"`, wireZeroTrace)
	})
	t.Run("old server indexes", func(t *testing.T) {
		w := wireDial(t, ep)
		w.send(`94 01 00 91 a1 "x" 93 cf 00 00 00 00 00 00 00 50 cf 00 00 00 00 00 00 00 51 cf 00 00 00 00 00 00 00 52`)
		w.expect(`94 01 00 91 a1 "x"`, wireZeroTrace)
	})
	t.Run("stream and control replies carry it", func(t *testing.T) {
		w := wireDial(t, ep)
		w.send(`94 01 01 90`, goStyle)
		w.send(`93 01 00 91 01`) // later frames need no headers
		w.expect(`94 01 00 91 01`, wireTrace(tr, sp, pa))
		w.send(`94 01 00 91 02 93 93 c2 50 a8`, wireLE(99), `93 c2 51 a8`, wireLE(98), `93 c2 52 a8`, wireLE(97))
		w.expect(`94 01 00 91 02`, wireTrace(tr, sp, pa)) // and later headers do not change it
		w.send(`93 01 02 90`)
		w.expect(`94 01 02 90`, wireTrace(tr, sp, pa))
		w.send(`94 02 cd ff fd 90`, goStyle)
		w.expect(`94 02 00 90`, wireTrace(tr, sp, pa))
	})
	t.Run("not read after the first message", func(t *testing.T) {
		w := wireDial(t, ep)
		w.send(`93 01 01 90`)
		w.send(`94 01 00 91 01`, goStyle)
		w.expect(`94 01 00 91 01`, wireZeroTrace)
	})
	t.Run("through the Go client", func(t *testing.T) {
		c, err := rpc.Dial(context.Background(), []rpc.Endpoint{ep}, rpctest.EchoGraph, rpc.DialConfig{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		ctx := wireCtx(t)
		ch, err := c.Call(rpc.WithTrace(ctx, rpc.Trace{TraceID: tr, SpanID: sp, ParentID: pa}), "ping", "x")
		if err != nil {
			t.Fatal(err)
		}
		m, err := ch.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]uint64{}
		for _, h := range m.Headers {
			got[h.Name] = binary.LittleEndian.Uint64(h.Value)
		}
		if len(m.Headers) != 3 || got["trace_id"] != tr || got["span_id"] != sp || got["parent_id"] != pa {
			t.Fatalf("reply headers %+v", m.Headers)
		}
	})
}

// A mute method never answers: the next frame is the reply to what follows.
func TestWireMute(t *testing.T) {
	wireLeakCheck(t)
	ep := wireServe(t)
	w := wireDial(t, ep)
	w.send(`93 01 02 90`)
	w.send(`93 02 02 93 01 a1 "x" c0`) // whatever the args
	w.send(`93 03 00 91 a1 "p"`)
	w.expect(`94 03 00 91 a1 "p"`, wireZeroTrace)
	w.send(`93 04 cd ff fd 90`)
	w.expect(`94 04 00 90`, wireZeroTrace)
}

// Errors raised in a handler come back as [C, 1, [[category, code], message]] (§2.7).
func TestWireErrorReply(t *testing.T) {
	wireLeakCheck(t)
	ep := wireServe(t)
	long := strings.Repeat("no such file or directory ", 3) // 78 bytes: raw16
	for _, tc := range []struct {
		name  string
		send  string
		reply []byte
	}{
		{"ENOENT", `93 01 03 92 02 a3 "msg"`, specCat(`94 01 01 92 92 0c 02 a3 "msg"`, wireZeroTrace)},
		{"EACCES on channel 300", `93 cd 01 2c 03 92 0d a0`, specCat(`94 cd 01 2c 01 92 92 0c 0d a0`, wireZeroTrace)},
		{"long message", `93 01 03 92 02 da 00 4e "` + long + `"`,
			specCat(`94 01 01 92 92 0c 02 da 00 4e "`+long+`"`, wireZeroTrace)},
		{"extra args ignored", `93 01 03 93 02 a1 "m" c3`, specCat(`94 01 01 92 92 0c 02 a1 "m"`, wireZeroTrace)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := wireDial(t, ep)
			w.send(tc.send)
			w.expect(tc.reply)
			w.ping(`cd 01 2d`) // the connection stays up
		})
	}
}

// When the server goes away, the client's open channels end with ErrNotConnected.
func TestWireServerStop(t *testing.T) {
	wireLeakCheck(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Not rpctest.Serve: this test stops the server in the middle.
	srvCtx, cancel := context.WithCancel(context.Background())
	srv := rpc.NewServer(rpctest.EchoDispatcher(), rpc.SessionConfig{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(srvCtx, ln) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
	t.Cleanup(stop)

	port := ln.Addr().(*net.TCPAddr).Port
	c, err := rpc.Dial(context.Background(), []rpc.Endpoint{{Host: "127.0.0.1", Port: uint16(port)}}, rpctest.EchoGraph, rpc.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := wireCtx(t)
	var chans []*rpc.Channel
	for i := 0; i < 2; i++ {
		ch, err := c.Call(ctx, "stream")
		if err != nil {
			t.Fatal(err)
		}
		if err := ch.Write(i); err != nil {
			t.Fatal(err)
		}
		if m, err := ch.Recv(ctx); err != nil || m.Name != "write" {
			t.Fatalf("echo: %+v, %v", m, err)
		}
		chans = append(chans, ch)
	}
	if n := srv.Sessions(); n != 1 {
		t.Fatalf("%d server sessions", n)
	}

	stop()
	for i, ch := range chans {
		if m, err := ch.Recv(ctx); !errors.Is(err, rpc.ErrNotConnected) {
			t.Fatalf("channel %d: got %+v, %v; want ErrNotConnected", i, m, err)
		}
	}
	<-c.Done()
	if err := chans[0].Write(9); !errors.Is(err, rpc.ErrNotConnected) {
		t.Fatalf("write after the end: %v", err)
	}
	if _, err := c.Call(ctx, "ping", "x"); !errors.Is(err, rpc.ErrNotConnected) {
		t.Fatalf("call after the end: %v", err)
	}
	if n := srv.Sessions(); n != 0 {
		t.Fatalf("%d server sessions after stop", n)
	}
}

// Closing the client's side ends the server's session too.
func TestWireClientGoesAway(t *testing.T) {
	wireLeakCheck(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvCtx, cancel := context.WithCancel(context.Background())
	srv := rpc.NewServer(rpctest.EchoDispatcher(), rpc.SessionConfig{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(srvCtx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	ep := rpc.Endpoint{Host: "127.0.0.1", Port: uint16(ln.Addr().(*net.TCPAddr).Port)}
	for _, tc := range []struct {
		name string
		tail string // sent before closing
	}{
		{"between frames", ``},
		{"inside a frame", `93 02 00`},
		{"with an open stream", `93 02 01 90 93 02 00 91 01`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := wireDial(t, ep)
			w.ping(`01`)
			if tc.tail != "" {
				w.send(tc.tail)
			}
			wireEventually(t, 5*time.Second, func() error {
				if n := srv.Sessions(); n != 1 {
					return fmt.Errorf("%d sessions", n)
				}
				return nil
			})
			w.c.Close()
			wireEventually(t, 5*time.Second, func() error {
				if n := srv.Sessions(); n != 0 {
					return fmt.Errorf("%d sessions after the client left", n)
				}
				return nil
			})
		})
	}
}
