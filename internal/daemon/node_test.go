package daemon_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	cnode "github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/rpc"
)

// TestNodeEcho uploads the Go echo example, starts it, calls it through the locator
// (one request, then a streaming exchange chunk by chunk), reads its info and pauses it.
func TestNodeEcho(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg := nodeTestConfig(t)
	n := startNode(t, cfg)
	echo := goBinary(t, "github.com/cocaine/cocaine/examples/echo")
	startApp(t, n, appSpec{name: "echo", binary: echo})

	// The app is published under its name, with the app protocol.
	r := resolve(t, n, "echo")
	if m, _ := r.Graph.Method(0); r.Version != 1 || m.Name != "enqueue" {
		t.Fatalf("resolve echo: version %d, graph %v", r.Version, renderGraph(r.Graph))
	}
	app := connect(t, n, "echo")
	ctx := ctxT(t)
	got, err := exchange(ctx, app, "ping", nil, "hello, ", "cocaine")
	if err != nil || got != "hello, cocaine" {
		t.Fatalf("ping: %q, %v", got, err)
	}

	// A streaming exchange: every chunk comes back before the next one is sent.
	ch, err := app.Call(ctx, "enqueue", "echo")
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []string{"one", "two", "three"} {
		if err := ch.Write(chunk); err != nil {
			t.Fatal(err)
		}
		m, err := ch.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var back string
		if m.Name != "write" || m.Args.Scan(&back) != nil || back != chunk {
			t.Fatalf("sent %q, got %s %v", chunk, m.Name, m.Args)
		}
	}
	ch.Close()
	if m, err := ch.Recv(ctx); err != nil || m.Name != "close" {
		t.Fatalf("after close: %v %v", m.Name, err)
	}

	// Through the node service as well.
	nc := connect(t, n, "node")
	nch, err := nc.Call(ctx, "enqueue", "echo", "ping")
	if err != nil {
		t.Fatal(err)
	}
	nch.Write("via node")
	nch.Close()
	if got, err := readStream(ctx, nch); err != nil || got != "via node" {
		t.Fatalf("node.enqueue: %q, %v", got, err)
	}

	var names []string
	mustCall(t, nc, "list", nil, &names)
	if len(names) != 1 || names[0] != "echo" {
		t.Fatalf("list: %v", names)
	}
	brief := nodeInfo(t, n, "echo", cnode.InfoBrief)
	if brief["state"] != "running" || brief["publushed"] != true {
		t.Fatalf("brief info: %v", brief)
	}
	full := nodeInfo(t, n, "echo", cnode.InfoOverseerReport|cnode.InfoExpandManifest|cnode.InfoExpandProfile)
	if asInt(path(full, "requests", "accepted")) != 3 || path(full, "manifest", "slave") != "bin/echo" ||
		path(full, "profile", "name") != "echo" || asInt(path(full, "pool", "capacity")) != 10 {
		t.Fatalf("info: %v", full)
	}
	slaves, _ := path(full, "pool", "slaves").(map[string]any)
	if len(slaves) != 1 {
		t.Fatalf("want one worker, info says %v", full["pool"])
	}

	// start_app again: already started; unknown apps: not running.
	if _, err := call(t, nc, "start_app", "echo", "echo"); !errors.Is(err, cnode.ErrAlreadyStarted) {
		t.Fatalf("second start_app: %v", err)
	}
	if _, err := call(t, nc, "pause_app", "nope"); !errors.Is(err, cnode.ErrNotRunning) {
		t.Fatalf("pause_app of an unknown app: %v", err)
	}
	if _, err := call(t, nc, "pause_app", "echo"); err != nil {
		t.Fatal(err)
	}
	eventually(t, callTimeout, func() error {
		if _, err := rpc.Resolve(ctx, n.locator(), "echo", "", rpc.DialConfig{}); !errors.Is(err, rpc.ErrServiceUnavailable) {
			return fmt.Errorf("resolve after pause: %v", err)
		}
		return nil
	})
	// The worker's socket goes with the app; the worker's cgroup with the worker.
	eventually(t, callTimeout, func() error {
		if m, _ := filepath.Glob(filepath.Join(cfg.DataDir, "run", "echo.*")); len(m) > 0 {
			return fmt.Errorf("socket left: %v", m)
		}
		return nil
	})
	_, err = exchange(ctx, app, "ping", nil, "late")
	if err == nil {
		t.Fatal("enqueue on a paused app's old connection succeeded")
	}
	app.Close()
	nc.Close()
	if err := n.stop(t); err != nil {
		t.Fatal(err)
	}
	noGoroutineLeak(t, before)
}

// TestNodeStartErrors: bad manifests and profiles are refused with precise errors and
// leave nothing in the table.
func TestNodeStartErrors(t *testing.T) {
	n := startNode(t, nodeTestConfig(t))
	nc := connect(t, n, "node")
	st := connect(t, n, "storage")
	write := func(coll, key string, v any) {
		t.Helper()
		if _, err := call(t, st, "write", coll, key, marshal(t, v), []string{"x"}); err != nil {
			t.Fatal(err)
		}
	}
	write("manifests", "noslave", map[string]any{"environment": map[string]any{"A": "b"}})
	write("manifests", "ok", map[string]any{"slave": "/bin/true"})
	write("profiles", "bad", map[string]any{"concurrency": 0, "pool-limit": "ten", "heartbeat-timeout": -1, "publish-on": 3, "unpublish-under": 4})
	write("profiles", "badiso", map[string]any{"isolate": map[string]any{"type": "process", "args": map[string]any{"class": "gold", "cpu": map[string]any{"cpu.shares": 512}}}})
	write("profiles", "noiso", map[string]any{"isolate": map[string]any{"type": "porto"}})
	write("profiles", "good", map[string]any{})
	for _, tc := range []struct {
		app, profile string
		want         error
		code         int
	}{
		{"missing", "good", cnode.ErrNotFound, 2},
		{"noslave", "good", cnode.ErrInvalidManifest, 22},
		{"ok", "missing", cnode.ErrNotFound, 2},
		{"ok", "bad", cnode.ErrInvalidProfile, 22},
		{"ok", "badiso", cnode.ErrInvalidArgs, 22},
		{"ok", "noiso", cnode.ErrUnknownIsolate, 1},
		{"../../etc", "good", cnode.ErrInvalidName, 22},
		{"a/b", "good", cnode.ErrInvalidName, 22},
		{"", "good", cnode.ErrInvalidName, 22},
	} {
		_, err := call(t, nc, "start_app", tc.app, tc.profile)
		e := wireError(t, err)
		if e.Code != tc.code {
			t.Errorf("start_app(%s, %s): %v, want code %d", tc.app, tc.profile, e, tc.code)
		}
		t.Logf("start_app(%s, %s): %v", tc.app, tc.profile, e)
	}
	var names []string
	mustCall(t, nc, "list", nil, &names)
	if len(names) != 0 {
		t.Fatalf("failed starts left apps in the table: %v", names)
	}
	// A missing archive for a relative executable: broken, and stays until paused.
	write("manifests", "noarchive", map[string]any{"slave": "run.sh"})
	_, err := call(t, nc, "start_app", "noarchive", "good")
	if !errors.Is(err, cnode.ErrSpool) {
		t.Fatalf("start without an archive: %v", err)
	}
	info := nodeInfo(t, n, "noarchive", 0)
	if info["state"] != "broken" || asInt(info["error"]) != 7 {
		t.Fatalf("broken app info: %v", info)
	}
	if _, err := call(t, nc, "start_app", "noarchive", "good"); !errors.Is(err, cnode.ErrAlreadyStarted) {
		t.Fatalf("start of a broken app: %v", err)
	}
	if _, err := call(t, nc, "info", "nope"); wireError(t, err).Category != rpc.CategoryGeneric {
		t.Fatalf("info of an unknown app: %v", err)
	}
	if _, err := call(t, nc, "pause_app", "noarchive"); err != nil {
		t.Fatal(err)
	}
	_ = os.Getpid
	_ = time.Second
}

// TestNodeHeadersAndTrace: request headers reach the worker with the invoke, the trace
// ids are kept on the way in, and the reply carries the request's trace.
func TestNodeHeadersAndTrace(t *testing.T) {
	n := startNode(t, nodeTestConfig(t))
	bw := goBinary(t, "./testdata/badworker")
	startApp(t, n, appSpec{name: "hdr", binary: bw, env: map[string]any{"MODE": "info"}})
	app := connect(t, n, "hdr")
	tr := rpc.Trace{TraceID: 0x1122334455667788, SpanID: 77, ParentID: 5}
	ctx := rpc.WithTrace(ctxT(t), tr)
	got, err := exchange(ctx, app, "headers", []rpc.Header{{Name: "x-custom", Value: []byte("v1")}})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("trace=%d span=77 custom=v1", tr.TraceID); got != want {
		t.Fatalf("the worker saw %q, want %q", got, want)
	}
	// The reply frames carry the trace of the request, as the core sends them.
	raw := dialRaw(t, r0(t, n, "hdr"))
	raw.send(t, []byte{0x94, 0x05, 0x00, 0x91, 0xa7, 'h', 'e', 'a', 'd', 'e', 'r', 's',
		0x93, 0x93, 0xc2, 0x50, 0xa8, 9, 0, 0, 0, 0, 0, 0, 0, 0x93, 0xc2, 0x51, 0xa8, 8, 0, 0, 0, 0, 0, 0, 0,
		0x93, 0xc2, 0x52, 0xa8, 0, 0, 0, 0, 0, 0, 0, 0})
	raw.send(t, frame(5, 2))
	f := raw.next(t)
	var body string
	rpc.Args(f.Args).Scan(&body)
	if f.Channel != 5 || f.Type != 0 || body != "trace=9 span=8 custom=" {
		t.Fatalf("reply: %+v %q", f, body)
	}
	ids := map[string][]byte{}
	for _, h := range f.Headers {
		ids[h.Name] = h.Value
	}
	if ids["trace_id"][0] != 9 || ids["span_id"][0] != 8 {
		t.Fatalf("reply headers: %v", f.Headers)
	}
}

// r0 is the first endpoint of a service.
func r0(t *testing.T, n *node, name string) rpc.Endpoint { return resolve(t, n, name).Endpoints[0] }
