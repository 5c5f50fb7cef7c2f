package daemon_test

import (
	"context"
	"log/slog"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/cocaine/cocaine/internal/daemon"
)

// TestOriginalPythonClientWire runs testdata/pyclient.py, which speaks to the node the way
// the original Cocaine 0.12 Python framework and cocaine-tool do on the wire, against a
// real daemon. It needs Debian's python3 with python3-msgpack (scripts/test installs it).
func TestOriginalPythonClientWire(t *testing.T) {
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import msgpack").Run(); err != nil {
		t.Skipf("needs %s with python3-msgpack (apt-get install python3-msgpack): %v", python, err)
	}
	cfg := daemon.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Network.Pinned = map[string]int{"locator": 0}
	cfg.Logging.Sinks = nil
	d, err := daemon.New(cfg, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1) // Run's result
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("daemon failed to start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("daemon not ready")
	}
	loc := d.Endpoint("locator")[0]
	cmdCtx, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	out, err := exec.CommandContext(cmdCtx, python, "testdata/pyclient.py", loc.Host, strconv.Itoa(int(loc.Port))).CombinedOutput()
	t.Logf("pyclient.py:\n%s", out)
	if err != nil {
		t.Fatalf("pyclient.py failed: %v", err)
	}
}
