package daemon_test

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// TestNodeHostileInput: protocol violations on the node's, an app's and the worker
// socket's connections close that connection only; everything else goes on serving.
func TestNodeHostileInput(t *testing.T) {
	cfg := nodeTestConfig(t)
	n := startNode(t, cfg)
	echo := goBinary(t, "github.com/cocaine/cocaine/examples/echo")
	startApp(t, n, appSpec{name: "echo", binary: echo})
	nodeEP, appEP := r0(t, n, "node"), r0(t, n, "echo")
	for _, tc := range []struct {
		name string
		ep   rpc.Endpoint
		send []byte
	}{
		{"node: start_app with a number", nodeEP, frame(1, 0, 42, "x")},
		{"node: control of an unknown app (the original drops the connection)", nodeEP, frame(1, 4, "ghost")},
		{"node: an unknown method", nodeEP, frame(1, 17)},
		{"app: enqueue without an event", appEP, frame(1, 0)},
		{"app: a control chunk that is not an int", appEP, append(frame(1, 2), frame(1, 0, "lots")...)},
		{"app: garbage", appEP, []byte{0xc1, 0xc1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, tc.ep)
			c.send(t, tc.send)
			c.expectClosed(t)
		})
	}
	// The worker socket: garbage, and a handshake with a uuid the pool does not know.
	socks, _ := filepath.Glob(filepath.Join(cfg.DataDir, "run", "echo.*"))
	if len(socks) != 1 {
		t.Fatalf("worker socket: %v", socks)
	}
	for _, b := range [][]byte{{0xc1}, frame(1, 0, "not-a-worker-of-this-pool")} {
		c, err := net.Dial("unix", socks[0])
		if err != nil {
			t.Fatal(err)
		}
		c.Write(b)
		c.SetReadDeadline(time.Now().Add(callTimeout))
		if _, err := c.Read(make([]byte, 64)); err == nil {
			t.Fatalf("the worker socket answered %x", b)
		}
		c.Close()
	}
	// Still serving.
	app := connect(t, n, "echo")
	if got, err := exchange(ctxT(t), app, "ping", nil, "fine"); err != nil || got != "fine" {
		t.Fatalf("after hostile input: %q %v", got, err)
	}
}
