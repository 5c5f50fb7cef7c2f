package daemon_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cocaine/cocaine/services/logging"
)

// The cross-language tests: the Python and Node.js frameworks (frameworks/python,
// frameworks/nodejs) against a real daemon. Their echo examples are uploaded through
// storage and started through the node, beside the Go echo example; framework clients
// written in Python and Node.js (testdata/frameworks/client.{py,js}) call them through
// the locator.

const debianPython = "/usr/bin/python3"

// needPython skips unless Debian's python3 with python3-msgpack is there.
func needPython(t testing.TB) {
	t.Helper()
	if err := exec.Command(debianPython, "-c", "import msgpack").Run(); err != nil {
		t.Skipf("needs %s with python3-msgpack (apt-get install python3-msgpack): %v", debianPython, err)
	}
}

// needNode skips unless node is on PATH and the Node.js framework's dependencies are
// installed (npm ci in frameworks/nodejs, which scripts/test runs).
func needNode(t testing.TB) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skipf("needs Node.js (node on PATH): %v", err)
	}
	if _, err := os.Stat(filepath.Join(repoRoot(t), "frameworks", "nodejs", "node_modules", "@msgpack", "msgpack", "package.json")); err != nil {
		t.Skipf("needs the Node.js framework's dependencies (cd frameworks/nodejs && npm ci): %v", err)
	}
	return node
}

func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// addTree adds every regular file under dir to files, named prefix/<relative path>.
func addTree(t testing.TB, files map[string]string, prefix, dir string, keep func(rel string) bool) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if keep == nil || keep(rel) {
			files[filepath.ToSlash(filepath.Join(prefix, rel))] = p
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// pythonEchoArchive is the Python echo example's archive: echo.py with the framework's
// package beside it. Its manifest's slave is "echo.py".
func pythonEchoArchive(t testing.TB) []byte {
	root := repoRoot(t)
	files := map[string]string{"echo.py": filepath.Join(root, "examples", "python-echo", "echo.py")}
	addTree(t, files, "cocaine", filepath.Join(root, "frameworks", "python", "cocaine"),
		func(rel string) bool { return strings.HasSuffix(rel, ".py") })
	return tarGz(t, files)
}

// nodeEchoArchive is the Node.js echo example's archive: echo.js with node_modules
// holding the framework and its one dependency. Its manifest's slave is "echo.js".
func nodeEchoArchive(t testing.TB) []byte {
	root := repoRoot(t)
	fw := filepath.Join(root, "frameworks", "nodejs")
	files := map[string]string{
		"echo.js": filepath.Join(root, "examples", "nodejs-echo", "echo.js"),
		"node_modules/cocaine-framework/package.json": filepath.Join(fw, "package.json"),
		"node_modules/cocaine-framework/index.js":     filepath.Join(fw, "index.js"),
	}
	addTree(t, files, "node_modules/cocaine-framework/lib", filepath.Join(fw, "lib"), nil)
	mp := filepath.Join(fw, "node_modules", "@msgpack", "msgpack")
	files["node_modules/@msgpack/msgpack/package.json"] = filepath.Join(mp, "package.json")
	addTree(t, files, "node_modules/@msgpack/msgpack/dist.cjs", filepath.Join(mp, "dist.cjs"),
		func(rel string) bool { return !strings.HasSuffix(rel, ".map") })
	return tarGz(t, files)
}

// uploadArchive writes an app's archive, manifest and profile through storage and
// starts it.
func uploadArchive(t *testing.T, n *node, name string, archive []byte, slave string, profile map[string]any) {
	t.Helper()
	writeApp(t, n, name, archive, map[string]any{"slave": slave}, profile)
	nc := connect(t, n, "node")
	if _, err := call(t, nc, "start_app", name, name); err != nil {
		t.Fatalf("start_app %s: %v", name, err)
	}
}

// driver runs a framework client from testdata/frameworks.
func driver(ctx context.Context, t *testing.T, n *node, interp, script string, args ...string) *exec.Cmd {
	loc := n.locator()[0]
	all := append([]string{filepath.Join("testdata", "frameworks", script), loc.String()}, args...)
	return exec.CommandContext(ctx, interp, all...)
}

// runDriver runs a client scenario to its end and fails the test with its output if it
// fails.
func runDriver(t *testing.T, n *node, interp, script string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := driver(ctx, t, n, interp, script, args...).CombinedOutput()
	t.Logf("%s %s:\n%s", script, strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("%s %s: %v", script, strings.Join(args, " "), err)
	}
	return string(out)
}

// workerPids lists the processes whose command line has --app app.
func workerPids(app string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), "\x00--app\x00"+app+"\x00") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killMidRequest runs the kill scenario: once the client says it is in the middle of a
// request, the app's worker is killed with SIGKILL and the client must get an error.
func killMidRequest(t *testing.T, n *node, interp, script, app string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := driver(ctx, t, n, interp, script, "kill", app)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	r := bufio.NewReader(stdout)
	line, err := r.ReadString('\n')
	if strings.TrimSpace(line) != "MIDREQUEST" {
		t.Fatalf("%s kill %s: %q %v\n%s", script, app, line, err, stderr.String())
	}
	pids := workerPids(app)
	if len(pids) != 1 {
		t.Fatalf("want one worker of %s, found %v", app, pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "go\n")
	rest, _ := io.ReadAll(r)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%s kill %s: %v\n%s%s", script, app, err, rest, stderr.String())
	}
	t.Logf("%s kill %s: %s", script, app, rest)
	return string(rest)
}

// TestFrameworksCrossLanguage: a Python client calls a Go worker, a Node.js worker and a
// Python worker; a Node.js client calls them too. Each call: a request read whole with a
// trace (the reply carries it back), streaming both ways chunk by chunk and with many
// chunks in flight, the framework's "no handler" error and an app's own error. Then a
// worker of each new language is killed mid-request and its client gets the node's
// error; the workers logged through the logging service; pausing the apps stops every
// worker cleanly.
func TestFrameworksCrossLanguage(t *testing.T) {
	needPython(t)
	nodeBin := needNode(t)
	cfg := nodeTestConfig(t)
	logFile := filepath.Join(t.TempDir(), "apps.jsonl")
	cfg.Logging.Sinks = []logging.SinkConfig{{Type: "file", Path: logFile}}
	t.Cleanup(func() { killLeftovers(t, "goecho", "pyecho", "jsecho") }) // after the daemon stopped
	n := startNode(t, cfg)

	startApp(t, n, appSpec{name: "goecho", binary: goBinary(t, "github.com/cocaine/cocaine/examples/echo")})
	// A terminate-timeout beyond callTimeout: a worker that did not exit on its own after
	// terminate would outlast the wait for it below.
	profile := map[string]any{"terminate-timeout": 3 * callTimeout.Seconds()}
	uploadArchive(t, n, "pyecho", pythonEchoArchive(t), "echo.py", profile)
	uploadArchive(t, n, "jsecho", nodeEchoArchive(t), "echo.js", profile)

	for _, c := range []struct{ interp, script string }{{debianPython, "client.py"}, {nodeBin, "client.js"}} {
		runDriver(t, n, c.interp, c.script, "exchange", "goecho")
		runDriver(t, n, c.interp, c.script, "exchange", "jsecho", "fail")
		runDriver(t, n, c.interp, c.script, "exchange", "pyecho", "fail")
	}

	// A worker killed mid-request: the client gets the node's error, slave/control_ipc.
	for _, c := range []struct{ interp, script, app string }{
		{debianPython, "client.py", "jsecho"},
		{nodeBin, "client.js", "pyecho"},
	} {
		out := killMidRequest(t, n, c.interp, c.script, c.app)
		if !strings.Contains(out, fmt.Sprintf("%s: killed mid-request: %d 10 ", c.app, 0x53FF)) || !strings.Contains(out, "signal 9") {
			t.Fatalf("%s after the kill: %s", c.script, out)
		}
	}

	// The workers' own records reached the logging service: source app/<app>, the
	// worker's uuid, and the trace id of the request they served.
	eventually(t, callTimeout, func() error {
		b, _ := os.ReadFile(logFile)
		for _, app := range []string{"pyecho", "jsecho"} {
			found := false
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, `"app/`+app+`"`) && strings.Contains(l, `"ping"`) &&
					strings.Contains(l, `"uuid"`) && strings.Contains(l, strconv.FormatUint(0x0102030405060708, 10)) {
					found = true
					break
				}
			}
			if !found {
				return fmt.Errorf("no ping record of %s in the logging service's sink", app)
			}
		}
		return nil
	})

	// Pausing the apps terminates their workers: each echoes the terminate and exits by
	// itself, well before terminate-timeout.
	nc := connect(t, n, "node")
	for _, app := range []string{"pyecho", "jsecho"} {
		if _, err := call(t, nc, "pause_app", app); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, callTimeout, func() error {
		for _, app := range []string{"pyecho", "jsecho"} {
			if pids := workerPids(app); len(pids) > 0 {
				return fmt.Errorf("%s workers still running after pause_app: %v", app, pids)
			}
		}
		return nil
	})
}

// killLeftovers kills, by their --app argument, workers a failed test left behind.
func killLeftovers(t *testing.T, apps ...string) {
	for _, app := range apps {
		for _, pid := range workerPids(app) {
			t.Errorf("worker of %s left running (pid %d)", app, pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
