package daemon_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cnode "github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/services/logging"
)

// crashlogs lists the app's crash logs through storage and reads them back.
func crashlogs(t *testing.T, n *node, app string) map[string][]string {
	t.Helper()
	st := connect(t, n, "storage")
	var keys []string
	mustCall(t, st, "find", []any{"crashlogs", []string{app}}, &keys)
	out := map[string][]string{}
	for _, k := range keys {
		var blob []byte
		mustCall(t, st, "read", []any{"crashlogs", k}, &blob)
		v, err := rpc.Unmarshal(blob)
		if err != nil {
			t.Fatalf("crash log %s: %v", k, err)
		}
		var lines []string
		for _, l := range v.([]any) {
			lines = append(lines, l.(string))
		}
		out[k] = lines
	}
	return out
}

// waitCrashlog waits for one crash log of app and returns its lines.
func waitCrashlog(t *testing.T, n *node, app string) []string {
	t.Helper()
	var lines []string
	eventually(t, callTimeout, func() error {
		for _, l := range crashlogs(t, n, app) {
			lines = l
			return nil
		}
		return errors.New("no crash log yet")
	})
	return lines
}

func expectCode(t *testing.T, what string, err error, want error) *rpc.Error {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
	return wireError(t, err)
}

// TestNodeWorkerCrash: a worker that exits mid-request gives its client an error with
// the exit status, leaves a crash log with its last output, and its output reaches the
// logging service with the app and worker id.
func TestNodeWorkerCrash(t *testing.T) {
	cfg := nodeTestConfig(t)
	logFile := filepath.Join(t.TempDir(), "apps.jsonl")
	cfg.Logging.Sinks = []logging.SinkConfig{{Type: "file", Path: logFile}}
	n := startNode(t, cfg)
	bw := goBinary(t, "./testdata/badworker")
	startApp(t, n, appSpec{name: "crasher", binary: bw, env: map[string]any{"MODE": "crash"},
		profile: map[string]any{"crashlog-limit": 4}})
	app := connect(t, n, "crasher")
	_, err := exchange(ctxT(t), app, "crash", nil, "boom")
	e := expectCode(t, "a crashing worker", err, cnode.ErrControlIPC)
	if !strings.Contains(e.Message, "exited with status 3") {
		t.Fatalf("the error does not say how the worker ended: %v", e)
	}
	lines := waitCrashlog(t, n, "crasher")
	// crashlog-limit 4: the last four lines, then ours saying why.
	if len(lines) != 5 || lines[0] != "line 2 before the crash" || lines[3] != "crashing now" ||
		!strings.Contains(lines[4], "exited with status 3") {
		t.Fatalf("crash log: %q", lines)
	}
	info := nodeInfo(t, n, "crasher", cnode.InfoOverseerReport)
	if asInt(path(info, "pool", "total:crashed")) != 1 {
		t.Fatalf("info after a crash: %v", info["pool"])
	}
	// After the back-off a new worker takes the next request.
	if got, err := exchange(ctxT(t), app, "info", nil); err != nil || got == "" {
		t.Fatalf("after the respawn back-off: %q %v", got, err)
	}
	if spawned := asInt(path(nodeInfo(t, n, "crasher", cnode.InfoOverseerReport), "pool", "total:spawned")); spawned != 2 {
		t.Fatalf("%d workers spawned, want 2", spawned)
	}
	eventually(t, callTimeout, func() error {
		b, _ := os.ReadFile(logFile)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "line 0 before the crash") && strings.Contains(l, `"app/crasher"`) &&
				strings.Contains(l, `"uuid"`) && strings.Contains(l, `"app"`) {
				return nil
			}
		}
		return errors.New("worker output not in the logging service's sink")
	})
}

// TestNodeWorkerHangs: a worker that never answers: the request times out (profile
// request-timeout, or the request_timeout header), both sides get an error, and the
// worker stays in the pool.
func TestNodeWorkerHangs(t *testing.T) {
	n := startNode(t, nodeTestConfig(t))
	bw := goBinary(t, "./testdata/badworker")
	startApp(t, n, appSpec{name: "hanger", binary: bw, env: map[string]any{"MODE": "hang"},
		profile: map[string]any{"request-timeout": 0.3}})
	app := connect(t, n, "hanger")
	_, err := exchange(ctxT(t), app, "hang", nil, "x")
	expectCode(t, "a hanging handler", err, cnode.ErrTimeout)

	// The header overrides the profile: 8-byte little-endian milliseconds.
	startApp(t, n, appSpec{name: "hanger2", binary: bw, env: map[string]any{"MODE": "hang"},
		profile: map[string]any{"request-timeout": 3600}})
	app2 := connect(t, n, "hanger2")
	ms := []byte{200, 0, 0, 0, 0, 0, 0, 0}
	_, err = exchange(ctxT(t), app2, "hang", []rpc.Header{{Name: cnode.HeaderRequestTimeout, Value: ms}}, "x")
	expectCode(t, "request_timeout header", err, cnode.ErrTimeout)
	// Still serving: the same worker answers the next request.
	if got, err := exchange(ctxT(t), app2, "info", nil); err != nil || got == "" {
		t.Fatalf("after a timeout: %q %v", got, err)
	}
	if l := crashlogs(t, n, "hanger2"); len(l) != 0 {
		t.Fatalf("a timeout is not a crash: %v", l)
	}
}

// TestNodeWorkerNeverHandshakes: the worker is killed after handshake-timeout, with a
// crash log; the queued request expires with deadline_error instead of hanging.
func TestNodeWorkerNeverHandshakes(t *testing.T) {
	n := startNode(t, nodeTestConfig(t))
	bw := goBinary(t, "./testdata/badworker")
	startApp(t, n, appSpec{name: "silent", binary: bw, env: map[string]any{"MODE": "silent"},
		profile: map[string]any{"handshake-timeout": 0.2, "request-timeout": 1, "queue-limit": 1}})
	// A client that leaves while its event is queued frees its place in the queue.
	gone := connect(t, n, "silent")
	if _, err := gone.Call(ctxT(t), "enqueue", "anything"); err != nil {
		t.Fatal(err)
	}
	gone.Close()
	app := connect(t, n, "silent")
	var err error
	eventually(t, callTimeout, func() error {
		_, err = exchange(ctxT(t), app, "anything", nil)
		if errors.Is(err, cnode.ErrQueueFull) {
			return err // the node has not seen the first client leave yet
		}
		return nil
	})
	expectCode(t, "no worker ever handshakes", err, cnode.ErrDeadline)
	lines := waitCrashlog(t, n, "silent")
	if len(lines) < 2 || lines[0] != "badworker starting in mode silent" || !strings.Contains(lines[len(lines)-1], "handshake timed out") {
		t.Fatalf("crash log: %q", lines)
	}
}

// TestNodeWorkerNoHeartbeat: a worker that handshakes but never heartbeats is shut down
// after heartbeat-timeout, and its request gets heartbeat_timeout.
func TestNodeWorkerNoHeartbeat(t *testing.T) {
	n := startNode(t, nodeTestConfig(t))
	bw := goBinary(t, "./testdata/badworker")
	startApp(t, n, appSpec{name: "mute", binary: bw, env: map[string]any{"MODE": "nobeat"},
		profile: map[string]any{"heartbeat-timeout": 0.3}})
	app := connect(t, n, "mute")
	_, err := exchange(ctxT(t), app, "x", nil)
	expectCode(t, "no heartbeats", err, cnode.ErrHeartbeatTimeout)
}

// TestNodeWorkerOutOfMemory: a worker over its memory limit is killed by the kernel, and
// the node says so to the client and in the crash log.
func TestNodeWorkerOutOfMemory(t *testing.T) {
	needCgroups(t)
	n := startNode(t, nodeTestConfig(t))
	bw := goBinary(t, "./testdata/badworker")
	startApp(t, n, appSpec{name: "hog", binary: bw, env: map[string]any{"MODE": "memory"},
		profile: map[string]any{"isolate": map[string]any{"type": "process", "args": map[string]any{"memory_limit": 64 << 20}}}})
	app := connect(t, n, "hog")
	_, err := exchange(ctxT(t), app, "grow", nil)
	e := expectCode(t, "a worker over its memory limit", err, cnode.ErrControlIPC)
	if !strings.Contains(e.Message, "OOM killer") {
		t.Fatalf("the error does not say it was the OOM killer: %v", e)
	}
	lines := waitCrashlog(t, n, "hog")
	if !strings.Contains(lines[len(lines)-1], "killed by the OOM killer (memory limit 67108864 bytes)") {
		t.Fatalf("crash log: %q", lines)
	}
}

// TestNodeWorkerStopsReading: a worker that never reads its socket, while clients push
// more than a connection buffers, stalls neither the app (info still answers) nor its
// clients for longer than their request timeout.
func TestNodeWorkerStopsReading(t *testing.T) {
	n := startNode(t, nodeTestConfig(t))
	bw := goBinary(t, "./testdata/badworker")
	startApp(t, n, appSpec{name: "deaf", binary: bw, env: map[string]any{"MODE": "nobeat"},
		profile: map[string]any{"heartbeat-timeout": 5, "request-timeout": 1, "pool-limit": 1, "terminate-timeout": 1}})
	big := strings.Repeat("x", 6<<20)
	errs := make(chan error, 3) // one result per client
	for range 3 {
		go func() {
			c, err := rpc.Service(ctxT(t), n.locator(), "deaf", rpc.DialConfig{})
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			// Write, and never close: the node reads the chunk, and its forwarding to the
			// worker is what fills up. The reply must come anyway.
			ctx := ctxT(t)
			ch, err := c.Call(ctx, "enqueue", "x")
			if err != nil {
				errs <- err
				return
			}
			ch.Write(big)
			_, err = readStream(ctx, ch)
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; !errors.Is(err, cnode.ErrTimeout) && !errors.Is(err, cnode.ErrDeadline) {
			t.Fatalf("a client of a worker that does not read: %v", err)
		}
		if info := nodeInfo(t, n, "deaf", cnode.InfoOverseerReport); info["state"] != "running" {
			t.Fatalf("info: %v", info)
		}
	}
}
