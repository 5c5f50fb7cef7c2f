package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	cnode "github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/rpc"
)

// TestNodePythonStyleWorker runs a worker that speaks the protocol as the original Python
// framework does (3-element frames, no headers, old-spec raws), under the node.
func TestNodePythonStyleWorker(t *testing.T) {
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import msgpack").Run(); err != nil {
		t.Skipf("needs %s with python3-msgpack (apt-get install python3-msgpack): %v", python, err)
	}
	n := startNode(t, nodeTestConfig(t))
	startApp(t, n, appSpec{name: "py", binary: "testdata/pyworker.py"})
	app := connect(t, n, "py")
	got, err := exchange(ctxT(t), app, "upper", nil, "hello, ", "python")
	if err != nil || got != "HELLO, PYTHON" {
		t.Fatalf("upper: %q %v", got, err)
	}
	_, err = exchange(ctxT(t), app, "nope", nil)
	if e := wireError(t, err); e.Category != rpc.CategoryWorker || e.Code != 1 {
		t.Fatalf("unknown event: %v", e)
	}
	nc := connect(t, n, "node")
	if _, err := call(t, nc, "pause_app", "py"); err != nil {
		t.Fatal(err)
	}
}

// TestNodeRunlistAtBoot: the apps of node.runlist start when the daemon starts.
func TestNodeRunlistAtBoot(t *testing.T) {
	cfg := nodeTestConfig(t)
	first := startNode(t, cfg)
	echo := goBinary(t, "github.com/cocaine/cocaine/examples/echo")
	upload(t, first, appSpec{name: "booted", binary: echo})
	st := connect(t, first, "storage")
	// "missing" has no manifest: it is logged and skipped.
	if _, err := call(t, st, "write", "runlists", "boot", marshal(t, map[string]any{"booted": "booted", "missing": "booted"}), []string{"runlist"}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	cfg.Node.Runlist = "boot"
	n := startNode(t, cfg)
	var app *rpc.Conn
	eventually(t, callTimeout, func() error {
		c, err := rpc.Service(ctxT(t), n.locator(), "booted", rpc.DialConfig{})
		app = c
		return err
	})
	defer app.Close()
	if got, err := exchange(ctxT(t), app, "ping", nil, "up"); err != nil || got != "up" {
		t.Fatalf("a runlist app: %q %v", got, err)
	}
}

// TestNodePublishOn: with publish-on 1 the app's service appears only once a worker is
// active; node.enqueue reaches the app before that.
func TestNodePublishOn(t *testing.T) {
	n := startNode(t, nodeTestConfig(t))
	echo := goBinary(t, "github.com/cocaine/cocaine/examples/echo")
	startApp(t, n, appSpec{name: "late", binary: echo, profile: map[string]any{"publish-on": 1}})
	ctx := ctxT(t)
	if _, err := rpc.Resolve(ctx, n.locator(), "late", "", rpc.DialConfig{}); !errors.Is(err, rpc.ErrServiceUnavailable) {
		t.Fatalf("published before any worker was active: %v", err)
	}
	if info := nodeInfo(t, n, "late", 0); info["publushed"] != false {
		t.Fatalf("info: %v", info)
	}
	nc := connect(t, n, "node")
	ch, err := nc.Call(ctx, "enqueue", "late", "ping")
	if err != nil {
		t.Fatal(err)
	}
	ch.Write("first")
	ch.Close()
	if got, err := readStream(ctx, ch); err != nil || got != "first" {
		t.Fatalf("node.enqueue: %q %v", got, err)
	}
	eventually(t, callTimeout, func() error {
		_, err := rpc.Resolve(ctx, n.locator(), "late", "", rpc.DialConfig{})
		return err
	})
	// Unknown apps through node.enqueue: not running, the stream is swallowed.
	ch, err = nc.Call(ctx, "enqueue", "ghost", "ping")
	if err != nil {
		t.Fatal(err)
	}
	ch.Write("x")
	if _, err := readStream(ctx, ch); !errors.Is(err, cnode.ErrNotRunning) {
		t.Fatalf("enqueue to an unknown app: %v", err)
	}
	_ = context.Background
}

// TestNodeWorkerArguments: workers get the original's arguments, sorted by key, run in
// the app's spool directory with the manifest's environment.
func TestNodeWorkerArguments(t *testing.T) {
	cfg := nodeTestConfig(t)
	n := startNode(t, cfg)
	bw := goBinary(t, "./testdata/badworker")
	startApp(t, n, appSpec{name: "argv", binary: bw, env: map[string]any{"MODE": "info", "GREETING": "hi there"}})
	app := connect(t, n, "argv")
	got, err := exchange(ctxT(t), app, "args", nil)
	if err != nil {
		t.Fatal(err)
	}
	var uuid string
	for id := range slaves(t, n, "argv") {
		uuid = id
	}
	sock := filepath.Join(cfg.DataDir, "run", "argv."+strconv.Itoa(os.Getpid()))
	want := fmt.Sprintf("%q cwd=%s env=hi there",
		[]string{"--app", "argv", "--endpoint", sock, "--locator", n.locator()[0].String(), "--protocol", "1", "--uuid", uuid},
		filepath.Join(cfg.DataDir, "spool", "argv"))
	if got != want {
		t.Fatalf("worker saw\n%s\nwant\n%s", got, want)
	}
}
