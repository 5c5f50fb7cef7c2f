package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cocaine/cocaine/internal/daemon"
	"github.com/cocaine/cocaine/rpc"
)

// The tests run the tool in-process (env.run, as main does) against one real daemon
// started in-process for the whole package, with a fresh data directory and a cgroup
// root of its own; TestThreeProcessCluster runs real binaries instead.

// shared is the package's daemon, started by the first test that needs it.
var shared struct {
	once    sync.Once
	err     error
	d       *daemon.Daemon
	cancel  context.CancelFunc
	done    chan error // Run's result
	dir     string
	cgroups string
	log     lockedBuffer
	bins    string // built binaries (examples, test apps)
}

// lockedBuffer is the daemon's log, printed if the package fails.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.d != nil {
		shared.cancel()
		select {
		case err := <-shared.done:
			if err != nil {
				fmt.Fprintf(os.Stderr, "daemon: %v\n", err)
				code = 1
			}
		case <-time.After(30 * time.Second):
			fmt.Fprintln(os.Stderr, "daemon did not stop")
			code = 1
		}
		removeCgroups(shared.cgroups)
		if code != 0 {
			shared.log.mu.Lock()
			fmt.Fprintf(os.Stderr, "daemon log:\n%s", shared.log.buf.String())
			shared.log.mu.Unlock()
		}
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// locator starts the shared daemon if needed and returns its locator.
func locator(t *testing.T) rpc.Endpoint {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a daemon")
	}
	shared.once.Do(func() { shared.err = startShared() })
	if shared.err != nil {
		t.Fatalf("daemon: %v", shared.err)
	}
	return shared.d.Endpoint("locator")[0]
}

func startShared() error {
	dir, err := os.MkdirTemp("", "cocaine-tool-test-")
	if err != nil {
		return err
	}
	shared.dir = dir
	shared.bins = filepath.Join(dir, "bin")
	var rnd [4]byte
	rand.Read(rnd[:])
	shared.cgroups = "/cocaine-tool-test-" + hex.EncodeToString(rnd[:])
	cfg := daemon.DefaultConfig()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Network.Pinned = map[string]int{"locator": 0, "raft": 0}
	cfg.Logging.Sinks = nil
	cfg.Raft.HeartbeatTimeout = daemon.Duration(100 * time.Millisecond)
	cfg.Raft.ElectionTimeout = daemon.Duration(100 * time.Millisecond)
	cfg.Raft.LeaderLeaseTimeout = daemon.Duration(50 * time.Millisecond)
	cfg.Node.CgroupRoot = shared.cgroups
	cfg.RPC.MaxFrameSize = 8 << 20 // so that a test can upload an app over the limit
	d, err := daemon.New(cfg, slog.New(slog.NewTextHandler(&shared.log, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	shared.d, shared.cancel, shared.done = d, cancel, make(chan error, 1) // Run's one result
	go func() { shared.done <- d.Run(ctx) }()
	select {
	case <-d.Ready():
		return nil
	case err := <-shared.done:
		shared.d = nil
		return fmt.Errorf("stopped before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("not ready after 30s")
	}
}

// removeCgroups removes the daemon's cgroup root (and anything left below it, killing
// what runs there) by name.
func removeCgroups(root string) {
	for _, c := range []string{"cpu", "cpuacct", "memory", "pids"} {
		base := filepath.Join("/sys/fs/cgroup", c, root)
		classes, _ := os.ReadDir(base)
		for _, cl := range classes {
			if !cl.IsDir() {
				continue
			}
			groups, _ := os.ReadDir(filepath.Join(base, cl.Name()))
			for _, g := range groups {
				if g.IsDir() {
					dir := filepath.Join(base, cl.Name(), g.Name())
					fmt.Fprintf(os.Stderr, "worker cgroup left behind: %s\n", dir)
					if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
						for _, f := range strings.Fields(string(b)) {
							if pid, err := strconv.Atoi(f); err == nil {
								syscall.Kill(pid, syscall.SIGKILL)
							}
						}
					}
					for range 100 {
						if os.Remove(dir) == nil {
							break
						}
						time.Sleep(10 * time.Millisecond)
					}
				}
			}
			os.Remove(filepath.Join(base, cl.Name()))
		}
		os.Remove(base)
	}
}

// result is one run of the tool.
type result struct {
	out, err string
	code     int
}

// runOpts tweak one run.
type runOpts struct {
	stdin  string
	env    map[string]string
	tty    bool // stderr is a terminal
	ctx    context.Context
	noHost bool      // no COCAINE_LOCATOR pointing at the shared daemon
	stdout io.Writer // instead of the buffer result.out
}

// writes is a stdout that hands each write to a channel: the tool writes every line of a
// stream in one write, so a test can wait for a line.
type writes chan string

func (w writes) Write(p []byte) (int, error) {
	w <- string(p)
	return len(p), nil
}

// newWrites makes a writes with room for every line a test waits for.
func newWrites() writes { return make(writes, 1000) }

// toolWith runs cocaine-tool args in-process.
func toolWith(t *testing.T, o runOpts, args ...string) result {
	t.Helper()
	vars := map[string]string{}
	if !o.noHost {
		vars["COCAINE_LOCATOR"] = locator(t).String()
	}
	for k, v := range o.env {
		vars[k] = v
	}
	ctx := o.ctx
	if ctx == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(t.Context(), 2*time.Minute) // a bound, not an assertion
		defer cancel()
	}
	var out, errb bytes.Buffer
	var stdout io.Writer = &out
	if o.stdout != nil {
		stdout = o.stdout
	}
	e := &env{ctx: ctx, stdin: strings.NewReader(o.stdin), stdout: stdout, stderr: &errb,
		getenv: func(k string) string { return vars[k] }, stderrTTY: o.tty}
	code := e.run(args)
	return result{out: out.String(), err: errb.String(), code: code}
}

func ct(t *testing.T, args ...string) result {
	t.Helper()
	return toolWith(t, runOpts{}, args...)
}

// ok runs the tool and fails the test unless it exits 0; it returns stdout.
func ok(t *testing.T, args ...string) string {
	t.Helper()
	r := ct(t, args...)
	if r.code != 0 {
		t.Fatalf("cocaine-tool %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.out, r.err)
	}
	return r.out
}

// okJSON runs the tool and decodes its JSON output into v, which it first zeroes
// (json.Unmarshal would merge into a map left from an earlier call).
func okJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := ok(t, args...)
	p := reflect.ValueOf(v).Elem()
	p.Set(reflect.Zero(p.Type()))
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("cocaine-tool %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// fails runs the tool, checks its exit code and that stderr says want (for service
// errors, "[category, code]"), and returns stderr.
func fails(t *testing.T, code int, want string, args ...string) string {
	t.Helper()
	r := ct(t, args...)
	if r.code != code {
		t.Fatalf("cocaine-tool %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.out, r.err)
	}
	if !strings.HasPrefix(r.err, "cocaine-tool: ") || !strings.Contains(r.err, want) {
		t.Fatalf("cocaine-tool %s: stderr %q, want a line with %q", strings.Join(args, " "), r.err, want)
	}
	if code == exitService && strings.Count(strings.TrimSpace(r.err), "\n") != 0 {
		t.Fatalf("cocaine-tool %s: a service error is one line, got %q", strings.Join(args, " "), r.err)
	}
	return r.err
}

// eventually retries f until it succeeds; the bound only turns a hang into a failure.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// binary builds a package of the module once (examples, test apps) and returns its path.
var binMu sync.Mutex

func binary(t *testing.T, pkg string) string {
	t.Helper()
	locator(t)
	binMu.Lock()
	defer binMu.Unlock()
	out := filepath.Join(shared.bins, filepath.Base(pkg))
	if _, err := os.Stat(out); err == nil {
		return out
	}
	if b, err := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// appDir makes an app directory: the binary under its name and a manifest.
func appDir(t *testing.T, bin string, extra map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), filepath.Base(bin))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, bin, filepath.Join(dir, filepath.Base(bin)), 0o755)
	writeFile(t, filepath.Join(dir, "manifest.json"), fmt.Sprintf(`{"slave": %q}`, filepath.Base(bin)))
	for name, content := range extra {
		writeFile(t, filepath.Join(dir, name), content)
	}
	return dir
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
