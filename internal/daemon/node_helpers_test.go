package daemon_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cocaine/cocaine/internal/daemon"
	"github.com/cocaine/cocaine/rpc"
)

// Binaries built once per test run, in binDir, removed by TestMain.
var (
	binDir  string
	binMu   sync.Mutex
	binMade = map[string]string{}
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cocaine-bins-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// goBinary builds the package pkg (an import path or ./relative) once and returns the
// executable's path.
func goBinary(t testing.TB, pkg string) string {
	t.Helper()
	return buildOnce(t, pkg, pkg, filepath.Base(pkg))
}

// buildOnce builds pkg into binDir/name, with env added to the environment, the first
// time key is asked for, and returns the executable's path.
func buildOnce(t testing.TB, key, pkg, name string, env ...string) string {
	t.Helper()
	binMu.Lock()
	defer binMu.Unlock()
	if p, ok := binMade[key]; ok {
		return p
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(binDir, name)
	cmd := exec.Command(gobin, "build", "-o", out, pkg)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	binMade[key] = out
	return out
}

// nodeTestConfig is testConfig with a cgroup root of the test's own, removed by name
// when the test ends (after the daemon, whose cleanup was registered later, stopped).
func nodeTestConfig(t *testing.T) daemon.Config {
	t.Helper()
	cfg := testConfig(t)
	var b [4]byte
	rand.Read(b[:])
	cfg.Node.CgroupRoot = "/cocaine-test-" + hex.EncodeToString(b[:])
	t.Cleanup(func() { removeCgroupRoot(t, cfg.Node.CgroupRoot) })
	return cfg
}

var cgroupControllers = []string{"cpu", "cpuacct", "memory", "pids"}

// removeCgroupRoot removes the test's hierarchy, deepest first, and fails the test if a
// worker's group was left behind.
func removeCgroupRoot(t testing.TB, root string) {
	for _, c := range cgroupControllers {
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
					t.Errorf("worker cgroup left behind: %s", dir)
					killGroup(dir) // even when the daemon failed to stop its workers
					os.Remove(dir)
				}
			}
			if err := os.Remove(filepath.Join(base, cl.Name())); err == nil {
				t.Errorf("class cgroup left behind by a stopped node: %s", filepath.Join(base, cl.Name()))
			}
		}
		if err := os.Remove(base); err == nil {
			t.Errorf("cgroup root left behind by a stopped node: %s", base)
		}
	}
}

// killGroup kills every process in a cgroup directory and waits, briefly, for it to
// empty so the directory can be removed.
func killGroup(dir string) {
	for range 100 {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil || len(strings.TrimSpace(string(b))) == 0 {
			return
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// needCgroups skips tests that need cgroups.
func needCgroups(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	for _, c := range cgroupControllers {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", c, "cgroup.procs")); err != nil {
			t.Skipf("needs the cgroup v1 %s controller mounted at /sys/fs/cgroup/%s", c, c)
		}
	}
}

// tarGz packs files (name in the archive -> path on disk) as a .tar.gz.
func tarGz(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func marshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := rpc.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// appSpec is an app to upload: its binary, manifest environment and profile.
type appSpec struct {
	name    string
	binary  string
	env     map[string]any
	profile map[string]any
}

// upload writes the app's archive, manifest and profile (named after the app) through
// the storage service, as cocaine-tool does.
func upload(t *testing.T, n *node, a appSpec) {
	t.Helper()
	archive := tarGz(t, map[string]string{"bin/" + filepath.Base(a.binary): a.binary})
	manifest := map[string]any{"slave": "bin/" + filepath.Base(a.binary)}
	if a.env != nil {
		manifest["environment"] = a.env
	}
	writeApp(t, n, a.name, archive, manifest, a.profile)
}

// writeApp writes an app's archive, manifest and profile (nil for an empty one), all
// named name, through the storage service.
func writeApp(t *testing.T, n *node, name string, archive []byte, manifest, profile map[string]any) {
	t.Helper()
	st := connect(t, n, "storage")
	if profile == nil {
		profile = map[string]any{}
	}
	for _, w := range []struct {
		coll  string
		value []byte
		tags  []string
	}{
		{"apps", marshal(t, archive), []string{"app"}},
		{"manifests", marshal(t, manifest), []string{"app"}},
		{"profiles", marshal(t, profile), []string{"profile"}},
	} {
		if _, err := call(t, st, "write", w.coll, name, w.value, w.tags); err != nil {
			t.Fatalf("write %s/%s: %v", w.coll, name, err)
		}
	}
}

// startApp uploads and starts an app with its profile.
func startApp(t *testing.T, n *node, a appSpec) {
	t.Helper()
	upload(t, n, a)
	nc := connect(t, n, "node")
	if _, err := call(t, nc, "start_app", a.name, a.name); err != nil {
		t.Fatalf("start_app %s: %v", a.name, err)
	}
}

// exchange enqueues event on the app's service, streams chunks, closes, and returns
// what came back joined, or the error the stream ended with.
func exchange(ctx context.Context, c *rpc.Conn, event string, headers []rpc.Header, chunks ...string) (string, error) {
	if len(headers) > 0 {
		ctx = rpc.WithHeaders(ctx, headers...)
	}
	ch, err := c.Call(ctx, "enqueue", event)
	if err != nil {
		return "", err
	}
	for _, c := range chunks {
		if err := ch.Write(c); err != nil {
			return "", err
		}
	}
	if err := ch.Close(); err != nil {
		return "", err
	}
	return readStream(ctx, ch)
}

func readStream(ctx context.Context, ch *rpc.Channel) (string, error) {
	var out strings.Builder
	for {
		m, err := ch.Recv(ctx)
		if errors.Is(err, rpc.ErrChannelClosed) {
			return out.String(), errors.New("the stream ended without close or error")
		}
		if err != nil {
			return out.String(), err
		}
		if err := m.Err(); err != nil {
			return out.String(), err
		}
		switch m.Name {
		case "write":
			var s string
			if err := m.Args.Scan(&s); err != nil {
				return out.String(), err
			}
			out.WriteString(s)
		case "close":
			return out.String(), nil
		default:
			return out.String(), fmt.Errorf("unexpected %q", m.Name)
		}
	}
}

// nodeInfo returns node.info(app, flags).
func nodeInfo(t *testing.T, n *node, app string, flags uint32) map[string]any {
	t.Helper()
	nc := connect(t, n, "node")
	var v map[string]any
	mustCall(t, nc, "info", []any{app, flags}, &v)
	return v
}

// path digs into a decoded info map: path(m, "pool", "slaves").
func path(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

func asInt(v any) int {
	switch x := v.(type) {
	case uint64:
		return int(x)
	case int64:
		return int(x)
	case float64:
		return int(x)
	}
	return -1
}
