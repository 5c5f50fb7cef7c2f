package daemon_test

import (
	"bytes"
	"net"
	"runtime"
	"sync"
	"testing"

	"github.com/cocaine/cocaine/rpc"
)

// step sends bytes and reads that many reply frames before the next step.
type step struct {
	send    []byte
	replies int
}

// hostileCase is a conversation after which the server must have closed the connection
// without a reply.
type hostileCase struct {
	name  string
	steps []step
}

func ping(channel uint64) []byte { return frame(channel, rpc.ControlPing) }

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

var zero8 = string(make([]byte, 8))

// commonHostile are protocol violations that every service must punish alike.
var commonHostile = []hostileCase{
	{"garbage bytes", []step{{send: []byte{0xc1, 0xc1, 0xc1, 0xc1}}}},
	{"an HTTP request", []step{{send: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")}}},
	{"a map, not an array", []step{{send: []byte{0x81, 0x01, 0x02}}}},
	{"a string, not an array", []step{{send: []byte{0xa5, 'h', 'e', 'l', 'l', 'o'}}}},
	{"an array of two", []step{{send: []byte{0x92, 0x01, 0x00}}}},
	{"a negative channel id", []step{{send: []byte{0x93, 0xff, 0x00, 0x90}}}},
	{"a string channel id", []step{{send: []byte{0x93, 0xa1, '1', 0x00, 0x90}}}},
	{"args not an array", []step{{send: []byte{0x93, 0x01, 0x00, 0xa1, 'x'}}}},
	{"args nil", []step{{send: []byte{0x93, 0x01, 0x00, 0xc0}}}},
	{"headers not an array", []step{{send: []byte{0x94, 0x01, 0xcd, 0xff, 0xfd, 0x90, 0x05}}}},
	{"header index 0", []step{{send: []byte{0x94, 0x01, 0xcd, 0xff, 0xfd, 0x90, 0x91, 0x00}}}},
	{"header index past the table", []step{{send: []byte{0x94, 0x01, 0xcd, 0xff, 0xfd, 0x90, 0x91, 0x7f}}}},
	{"header store flag not a bool", []step{{send: cat([]byte{0x94, 0x01, 0xcd, 0xff, 0xfd, 0x90}, mustMarshal([]any{[]any{1, "a", "b"}}))}}},
	{"trace id of 3 bytes", []step{{send: cat([]byte{0x94, 0x01, 0xcd, 0xff, 0xfd, 0x90}, mustMarshal([]any{
		[]any{false, "trace_id", []byte("abc")}, []any{false, "span_id", []byte(zero8)}, []any{false, "parent_id", []byte(zero8)},
	}))}}},
	{"wrong argument types", []step{{send: frame(1, 0, []any{}, []any{}, []any{})}}},
	{"too few arguments", []step{{send: frame(1, 0)}}},
	{"deeply nested arguments", []step{{send: cat([]byte{0x93, 0x01, 0x00}, bytes.Repeat([]byte{0x91}, 100000), []byte{0x90})}}},
	{"unknown method id", []step{{send: frame(1, 100)}}},
	{"method id just below the control ids", []step{{send: frame(1, rpc.ControlGoaway-1)}}},
	{"control settings (unimplemented)", []step{{send: frame(1, rpc.ControlSettings)}}},
	{"control goaway (unimplemented)", []step{{send: frame(1, rpc.ControlGoaway, []any{1, 0})}}},
	{"revoke with bad args", []step{{send: frame(1, rpc.ControlRevoke, "x")}}},
	{"channel id 0", []step{{send: ping(0)}}},
	{"a decreasing channel id", []step{{send: ping(5), replies: 1}, {send: ping(3)}}},
	{"a reused channel id", []step{{send: ping(5), replies: 1}, {send: ping(5)}}},
	{"a reused id after a revoke", []step{{send: frame(7, rpc.ControlRevoke, 6, []any{1, 0}), replies: 1}, {send: ping(6)}}},
	{"raw32 of 4 GiB", []step{{send: []byte{0x93, 0x01, 0x00, 0x91, 0xdb, 0xff, 0xff, 0xff, 0xff}}}},
	{"bin32 of 4 GiB", []step{{send: []byte{0x93, 0x01, 0x00, 0x91, 0xc6, 0xff, 0xff, 0xff, 0xff, 'x'}}}},
	{"a bare 4 GiB length prefix", []step{{send: []byte{0xdb, 0xff, 0xff, 0xff, 0xff}}}},
	{"an array of 4 G elements", []step{{send: []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0x01}}}},
	{"a map of 4 G pairs", []step{{send: []byte{0x93, 0x01, 0x00, 0x91, 0xdf, 0xff, 0xff, 0xff, 0xff}}}},
	{"a string just over the frame limit", []step{{send: []byte{0x93, 0x01, 0x00, 0x91, 0xdb, 0x04, 0x00, 0x00, 0x01}}}},
	{"a valid call, then garbage", []step{{send: ping(1), replies: 1}, {send: []byte{0xc1}}}},
}

// serviceHostile are violations specific to one service's methods.
var serviceHostile = map[string][]hostileCase{
	"locator": {
		{"resolve with a nil seed", []step{{send: frame(1, 0, "storage", nil)}}},
		{"resolve with an integer name", []step{{send: frame(1, 0, 5)}}},
		{"publish a graph with version 0", []step{{send: frame(1, 4, "x", []any{[]any{"127.0.0.1", 1}},
			[]any{0, map[uint64]any{0: []any{"m", map[string]any{}, map[string]any{}}}})}}},
		{"publish with a host name endpoint", []step{{send: frame(1, 4, "x", []any{[]any{"localhost", 1}})}}},
		{"ping inside publish", []step{{send: frame(1, 4, "x", []any{[]any{"127.0.0.1", 1}}), replies: 1}, {send: ping(1)}}},
		{"unknown message inside routing", []step{{send: frame(1, 5, "r"), replies: 1}, {send: frame(1, 9)}}},
		{"a message after resolve ended", []step{{send: frame(1, 0, "storage"), replies: 1}, {send: frame(1, 0)}}},
	},
	"logging": {
		{"emit with a string severity", []step{{send: frame(1, 0, "2", "app/x", "m")}}},
		{"set_verbosity without a level", []step{{send: frame(1, 2)}}},
		{"set_filter with a deeply nested filter", []step{{send: frame(1, 6, "app/", nest(1000), 60)}}},
		{"set_filter with a negative ttl", []step{{send: frame(1, 6, "app/", []any{"empty"}, -1)}}},
		{"remove_filter with a string id", []step{{send: frame(1, 7, "1")}}},
		{"an unknown message inside get", []step{{send: cat(frame(1, 4, "app/x"), frame(1, 7))}}},
		{"ping inside get", []step{{send: cat(frame(1, 4, "app/x"), ping(1))}}},
		{"a bad emit inside get", []step{{send: cat(frame(1, 4, "app/x"), frame(1, 0, "two", "m"))}}},
	},
	"storage": {
		{"write with nil tags", []step{{send: frame(1, 1, "c", "k", "v", nil)}}},
		{"write with integer tags", []step{{send: frame(1, 1, "c", "k", "v", []any{1})}}},
		{"read with a nil key", []step{{send: frame(1, 0, "c", nil)}}},
		{"find with a string for tags", []step{{send: frame(1, 3, "c", "a")}}},
	},
}

func nest(depth int) any {
	var v any = []any{"empty"}
	for range depth {
		v = []any{"||", v, []any{"empty"}}
	}
	return v
}

func mustMarshal(v any) []byte {
	b, err := rpc.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// probe is a call that must keep working on an already open connection.
var probes = map[string]struct {
	method string
	args   []any
}{
	"locator": {"uuid", nil},
	"logging": {"verbosity", nil},
	"storage": {"find", []any{"c", []string{"a"}}},
}

// TestHostileInput sends each violation on its own connection to each service and checks
// that the server closes that connection without a reply, that a client connected before
// still gets answers, and that a length prefix of 4 GiB is not allocated.
func TestHostileInput(t *testing.T) {
	n := startNode(t, testConfig(t))
	type target struct {
		ep    rpc.Endpoint
		probe *rpc.Conn
	}
	targets := map[string]target{}
	for name := range probes {
		targets[name] = target{resolve(t, n, name).Endpoints[0], connect(t, n, name)}
	}
	check := func(t *testing.T, name string, tc hostileCase) {
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		tg := targets[name]
		raw := dialRaw(t, tg.ep)
		for i, s := range tc.steps {
			raw.send(t, s.send)
			for range s.replies {
				if f := raw.next(t); f.Type != rpc.Value {
					t.Fatalf("step %d: reply [%d, %d, % x], want a value", i, f.Channel, f.Type, f.Args)
				}
			}
		}
		raw.expectClosed(t)
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if after.HeapAlloc > 1<<30 || after.TotalAlloc-before.TotalAlloc > 1<<30 {
			t.Errorf("the daemon allocated %d MiB (heap now %d MiB)", (after.TotalAlloc-before.TotalAlloc)>>20, after.HeapAlloc>>20)
		}
		p := probes[name]
		if _, err := call(t, tg.probe, p.method, p.args...); err != nil {
			t.Fatalf("the open %s connection no longer answers: %v", name, err)
		}
	}
	for _, tc := range commonHostile {
		t.Run(tc.name, func(t *testing.T) {
			for _, name := range []string{"locator", "logging", "storage"} {
				t.Run(name, func(t *testing.T) { check(t, name, tc) })
			}
		})
	}
	for name, cases := range serviceHostile {
		for _, tc := range cases {
			t.Run(name+"/"+tc.name, func(t *testing.T) { check(t, name, tc) })
		}
	}
}

// TestManyConnectionsDropped opens many connections at once, leaves them in every state
// (idle, half a frame, a call whose reply is never read, garbage) and drops them all: the
// node keeps answering and every session it started for them ends.
func TestManyConnectionsDropped(t *testing.T) {
	n := startNode(t, testConfig(t))
	var eps []rpc.Endpoint
	var probeConns []*rpc.Conn
	for _, name := range []string{"locator", "logging", "storage"} {
		eps = append(eps, resolve(t, n, name).Endpoints[0])
		probeConns = append(probeConns, connect(t, n, name))
	}
	// A call on each probe makes sure its server side session is running before the
	// goroutines are counted.
	for i, name := range []string{"locator", "logging", "storage"} {
		p := probes[name]
		if _, err := call(t, probeConns[i], p.method, p.args...); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// The node's background work (watches opened once the cluster has a leader, say)
	// may still be starting: count once the number has settled.
	before := settledGoroutines()
	payloads := [][]byte{
		nil,
		{0x94, 0x01},
		ping(1),
		cat(ping(1), ping(2), frame(3, 0, "storage")),
		{0xc1},
		{0x93, 0x01, 0x00, 0x91, 0xdb, 0x00, 0x10, 0x00, 0x00}, // announces 1 MiB, sends none
	}
	const conns = 300
	var (
		mu     sync.Mutex
		opened []net.Conn
		wg     sync.WaitGroup
	)
	for i := range conns {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", eps[i%len(eps)].String(), callTimeout)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			if p := payloads[i%len(payloads)]; p != nil {
				c.Write(p) // the server may close on garbage first; that is fine
			}
			mu.Lock()
			opened = append(opened, c)
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, c := range opened {
		c.Close()
	}
	if len(opened) != conns {
		t.Fatalf("opened %d of %d connections", len(opened), conns)
	}
	for i, name := range []string{"locator", "logging", "storage"} {
		p := probes[name]
		if _, err := call(t, probeConns[i], p.method, p.args...); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// A fresh connection works too.
		fresh := connect(t, n, name)
		if _, err := call(t, fresh, p.method, p.args...); err != nil {
			t.Fatalf("%s, new connection: %v", name, err)
		}
		fresh.Close()
	}
	noGoroutineLeak(t, before)
}
