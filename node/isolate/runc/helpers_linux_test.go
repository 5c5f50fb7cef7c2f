//go:build linux

package runc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/node/isolate/runc/runctest"
)

// init: the test binary is the containers' init too, and its main thread must stay
// with the main goroutine (see Init).
func init() { Init() }

func TestMain(m *testing.M) {
	if os.Getenv(staleHelperEnv) != "" {
		staleHelper() // TestStaleCleanup's daemon, killed by the test
	}
	os.Exit(m.Run())
}

// needRoot skips tests that start containers where they cannot run.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("containers need root")
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/cgroup.procs"); err != nil {
		if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
			t.Skip("needs cgroups (v1 memory controller or v2)")
		}
	}
}

// testRoot is a cgroup root of the test's own, removed by name in every hierarchy when
// the test ends, also after a failure.
func testRoot(t testing.TB) string {
	var b [4]byte
	rand.Read(b[:])
	root := "/cocaine-runc-test-" + hex.EncodeToString(b[:])
	t.Cleanup(func() { runctest.RemoveCgroupRoot(t, root) })
	return root
}

// h0root is the cgroup root of a test's hosts: one of its own, shared by every host of
// the test (TestStaleCleanup's two daemons).
func h0root(t testing.TB, cfg Config) string {
	if r, ok := roots[cfg.StateDir]; ok {
		return r
	}
	r := testRoot(t)
	roots[cfg.StateDir] = r
	return r
}

var roots = map[string]string{}

// testHost runs a Host over a fresh state directory until the test ends, then checks
// that it left nothing: no mounts under its state directory, no container state.
func testHost(t *testing.T, cfg Config, adjust func(*Host)) *Host {
	t.Helper()
	needRoot(t)
	state := t.TempDir()
	if cfg.StateDir == "" {
		cfg.StateDir = state
	}
	if cfg.BasesDir == "" {
		cfg.BasesDir = runctest.Bases(t)
	}
	root := h0root(t, cfg)
	h, err := New(Options{Config: cfg, CgroupRoot: root, Log: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	if adjust != nil {
		adjust(h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1) // Run's result
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Error("the host did not stop")
		}
		unmountUnder(cfg.StateDir)
		if ents, _ := os.ReadDir(filepath.Join(cfg.StateDir, "containers")); len(ents) > 0 {
			t.Errorf("container state left behind: %v", ents)
		}
	})
	<-h.Ready()
	return h
}

// isolate builds the host's isolate for args, failing the test on error.
func isolate(t *testing.T, h *Host, args map[string]any) node.Isolate {
	t.Helper()
	iso, err := h.Factory().New(args)
	if err != nil {
		t.Fatalf("isolate %v: %v", args, err)
	}
	return iso
}

// lines collects a container's output and lets a test wait for a line.
type lines struct {
	mu   sync.Mutex
	all  []string
	part string
	more chan struct{}
}

func newLines() *lines { return &lines{more: make(chan struct{}, 1)} } // a wake-up: one pending is enough

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	s := l.part + string(p)
	parts := strings.Split(s, "\n")
	l.all = append(l.all, parts[:len(parts)-1]...)
	l.part = parts[len(parts)-1]
	l.mu.Unlock()
	select {
	case l.more <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (l *lines) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n")
}

// wait blocks until a line equals want.
func (l *lines) wait(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		l.mu.Lock()
		for _, s := range l.all {
			if s == want {
				l.mu.Unlock()
				return
			}
		}
		l.mu.Unlock()
		select {
		case <-l.more:
		case <-deadline:
			t.Fatalf("no line %q in the output:\n%s", want, l.text())
		}
	}
}

// proc is a test's container, waited for once: by the test or by its cleanup.
type proc struct {
	*container
	once sync.Once
	err  error
}

// wait waits for the container with a bound.
func (p *proc) wait(t *testing.T) error {
	t.Helper()
	done := make(chan struct{})
	go p.once.Do(func() { p.err = p.container.Wait(); close(done) })
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		p.Kill()
		t.Fatal("the container did not exit")
	}
	return p.err
}

// spawn runs a busybox shell script in a container of iso. The script sees the worker
// arguments as $0 $1 ... (--endpoint and the socket path among them). The container is
// killed and waited for when the test ends, also after a failure.
func spawn(t *testing.T, iso node.Isolate, app, script string) (*proc, *lines) {
	t.Helper()
	return spawnExe(t, iso, app, "/bin/sh", []string{"-c", script})
}

// spawnExe runs exe with args (then --endpoint and the socket's path) in a container
// of iso.
func spawnExe(t *testing.T, iso node.Isolate, app, exe string, args []string) (*proc, *lines) {
	t.Helper()
	dir := t.TempDir() // the app's files: none
	sock := filepath.Join(t.TempDir(), app+".sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := newLines()
	var b [8]byte
	rand.Read(b[:])
	np, err := iso.Spawn(context.Background(), node.SpawnSpec{
		App: app, UUID: hex.EncodeToString(b[:]), Dir: dir, Executable: exe,
		Args:   append(args, "--endpoint", sock),
		AppEnv: []string{"GREETING=hi"}, Env: append(os.Environ(), "GREETING=hi"), Output: out,
	})
	if err != nil {
		t.Fatalf("spawn: %v", err)
	}
	p := &proc{container: np.(*container)}
	t.Cleanup(func() {
		p.Kill()
		p.once.Do(func() { p.err = p.container.Wait() })
	})
	return p, out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
