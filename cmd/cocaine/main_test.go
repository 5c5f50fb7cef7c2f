package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
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

// writeConfig writes a config file into a fresh directory and returns its path.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cocaine.json")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want []string // substrings of the error
	}{
		{"unknown top-level key", `{"data_dir": "/x", "bogus": 1}`, []string{`unknown field "bogus"`}},
		{"unknown key in network", `{"network": {"endpoint": "127.0.0.1", "endpiont": "::"}}`, []string{`unknown field "endpiont"`}},
		{"unknown key in a sink", `{"logging": {"sinks": [{"type": "file", "pth": "/x"}]}}`, []string{`unknown field "pth"`}},
		{"unknown key in storage", `{"storage": {"max_value": 5}}`, []string{`unknown field "max_value"`}},
		{"wrong type", `{"network": {"pinned": {"locator": "10053"}}}`, []string{"network.pinned"}},
		{"syntax error on line 3", "{\n  \"data_dir\": \"/x\",\n  \"uuid\": ,\n}\n", []string{"line 3", "invalid character"}},
		{"syntax error on line 1", `{"data_dir" "/x"}`, []string{"line 1"}},
		{"truncated", "{\n\"data_dir\": \"/x\"\n\n", []string{"line 2", "unexpected end of file"}},
		{"empty", " \n", []string{"line 1", "unexpected end of file"}},
		{"two objects", `{"data_dir": "/x"} {"data_dir": "/y"}`, []string{"more than one JSON value"}},
		{"missing file", "-", []string{"no such file"}},
		{"duration as a number", `{"raft": {"election_timeout": 5}}`, []string{`a duration is a string such as "1s"`}},
		{"bad duration", `{"unicorn": {"host_lease_ttl": "10 seconds"}}`, []string{`duration "10 seconds"`}},
		{"unknown key in raft", `{"raft": {"votres": 3}}`, []string{`unknown field "votres"`}},
		{"old storage path key", `{"storage": {"path": "/x/storage.db"}}`, []string{`unknown field "path"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.body)
			if tc.body == "-" {
				path += ".missing"
			}
			cfg := daemon.DefaultConfig()
			err := loadConfig(path, &cfg)
			if err == nil {
				t.Fatal("loadConfig = nil, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("loadConfig = %q, missing %q", err, w)
				}
			}
			// The same through the command line: exit code 2, the reason on stderr.
			var stdout, stderr bytes.Buffer
			if code := realMain([]string{"config", "--config", path}, &stdout, &stderr); code != 2 {
				t.Errorf("cocaine config exited %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tc.want[0]) || stdout.Len() != 0 {
				t.Errorf("stdout %q, stderr %q; want the error on stderr only", stdout.String(), stderr.String())
			}
		})
	}
}

func TestLoadConfigNumbers(t *testing.T) {
	path := writeConfig(t, `{
		"locator": {"extra": {"x-cocaine-cluster": "a", "n": 3, "neg": -2, "f": 1.5, "big": 18446744073709551615, "list": [1, {"k": 2}]}},
		"logging": {"default_filter": [["severity", 2], ["==", "n", -1]]}
	}`)
	cfg := daemon.DefaultConfig()
	if err := loadConfig(path, &cfg); err != nil {
		t.Fatal(err)
	}
	wantExtra := map[string]any{
		"x-cocaine-cluster": "a", "n": uint64(3), "neg": int64(-2), "f": 1.5, "big": uint64(18446744073709551615),
		"list": []any{uint64(1), map[string]any{"k": uint64(2)}},
	}
	if !reflect.DeepEqual(cfg.Locator.Extra, wantExtra) {
		t.Errorf("extra = %#v, want %#v", cfg.Locator.Extra, wantExtra)
	}
	wantFilter := []any{[]any{"severity", uint64(2)}, []any{"==", "n", int64(-1)}}
	if !reflect.DeepEqual(cfg.Logging.DefaultFilter, wantFilter) {
		t.Errorf("default_filter = %#v, want %#v", cfg.Logging.DefaultFilter, wantFilter)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("the loaded config does not validate: %v", err)
	}
}

// TestParseRunMerge checks the merge order: defaults, then the file, then flags.
func TestParseRunMerge(t *testing.T) {
	path := writeConfig(t, `{
		"data_dir": "/from/file",
		"uuid": "file-uuid",
		"network": {"endpoint": "127.0.0.2", "pinned": {"locator": 1234, "storage": 2345}},
		"logging": {"verbosity": 2, "sinks": [{"type": "file", "path": "/tmp/x.jsonl"}]}
	}`)
	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, cfg daemon.Config, lo logOptions)
	}{
		{"defaults", nil, func(t *testing.T, cfg daemon.Config, lo logOptions) {
			want := daemon.DefaultConfig()
			if !reflect.DeepEqual(cfg, want) {
				t.Errorf("config = %+v, want the defaults %+v", cfg, want)
			}
			if lo.format != "text" || lo.level.String() != "INFO" {
				t.Errorf("log options = %+v", lo)
			}
		}},
		{"file only", []string{"--config", path}, func(t *testing.T, cfg daemon.Config, lo logOptions) {
			if cfg.DataDir != "/from/file" || cfg.UUID != "file-uuid" || cfg.Network.Endpoint != "127.0.0.2" ||
				cfg.Network.Pinned["locator"] != 1234 || cfg.Network.Pinned["storage"] != 2345 || cfg.Logging.Verbosity != 2 {
				t.Errorf("config = %+v", cfg)
			}
			if cfg.RPC.MaxFrameSize != rpc.DefaultMaxFrameSize {
				t.Errorf("a default the file does not mention was lost: %+v", cfg.RPC)
			}
		}},
		{"flags override the file", []string{"--config", path, "--data-dir", "/from/flag", "--locator-port", "4321",
			"--endpoint", "127.0.0.3", "--uuid", "flag-uuid", "--log-level", "debug", "--log-format", "json"},
			func(t *testing.T, cfg daemon.Config, lo logOptions) {
				if cfg.DataDir != "/from/flag" || cfg.UUID != "flag-uuid" || cfg.Network.Endpoint != "127.0.0.3" ||
					cfg.Network.Pinned["locator"] != 4321 {
					t.Errorf("config = %+v", cfg)
				}
				if cfg.Network.Pinned["storage"] != 2345 || cfg.Logging.Verbosity != 2 {
					t.Errorf("file values the flags do not touch were lost: %+v", cfg)
				}
				if lo.format != "json" || lo.level.String() != "DEBUG" {
					t.Errorf("log options = %+v", lo)
				}
			}},
		{"cluster flags", []string{"--raft-port", "7000", "--join", "10.0.0.1,10.0.0.2:10053"},
			func(t *testing.T, cfg daemon.Config, lo logOptions) {
				if cfg.Network.Pinned["raft"] != 7000 || !reflect.DeepEqual(cfg.Raft.Join, []string{"10.0.0.1", "10.0.0.2:10053"}) {
					t.Errorf("raft port %d, join %q", cfg.Network.Pinned["raft"], cfg.Raft.Join)
				}
			}},
		{"flags before the file in argv still win", []string{"--locator-port", "0", "--config", path},
			func(t *testing.T, cfg daemon.Config, lo logOptions) {
				if cfg.Network.Pinned["locator"] != 0 {
					t.Errorf("locator port = %d, want 0", cfg.Network.Pinned["locator"])
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, lo, err := parseRun(tc.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg, lo)
		})
	}
}

func TestParseRunErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad endpoint", []string{"--endpoint", "localhost"}, `network.endpoint "localhost"`},
		{"port out of range", []string{"--locator-port", "70000"}, "out of range"},
		{"bad log level", []string{"--log-level", "loud"}, "--log-level"},
		{"bad log format", []string{"--log-format", "xml"}, "--log-format must be text or json"},
		{"unknown flag", []string{"--frobnicate"}, "flag provided but not defined"},
		{"stray argument", []string{"extra"}, "unexpected arguments: extra"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			_, _, err := parseRun(tc.args, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("parseRun = %v, want %q", err, tc.want)
			}
			stderr.Reset()
			if code := realMain(append([]string{"run"}, tc.args...), io.Discard, &stderr); code != 2 {
				t.Errorf("cocaine run exited %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr = %q, want %q", stderr.String(), tc.want)
			}
		})
	}
}

func TestRealMainCommands(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string // a substring; "" means empty
		stderr string
		exact  bool
	}{
		{"no command", nil, 2, "", "usage: cocaine", false},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`, false},
		{"a flag as the command", []string{"--data-dir", "/x"}, 2, "", `unknown command "--data-dir"`, false},
		{"version", []string{"version"}, 0, "cocaine " + version + "\n", "", true},
		{"--version", []string{"--version"}, 0, "cocaine " + version + "\n", "", true},
		{"help", []string{"help"}, 0, "usage: cocaine", "", false},
		{"run -h", []string{"run", "-h"}, 0, "", "-locator-port", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := realMain(tc.args, &stdout, &stderr); code != tc.code {
				t.Errorf("exit code %d, want %d", code, tc.code)
			}
			switch {
			case tc.exact && stdout.String() != tc.stdout:
				t.Errorf("stdout = %q, want %q", stdout.String(), tc.stdout)
			case tc.stdout == "" && stdout.Len() != 0:
				t.Errorf("stdout = %q, want nothing", stdout.String())
			case !strings.Contains(stdout.String(), tc.stdout):
				t.Errorf("stdout = %q, want %q", stdout.String(), tc.stdout)
			}
			switch {
			case tc.stderr == "" && stderr.Len() != 0:
				t.Errorf("stderr = %q, want nothing", stderr.String())
			case !strings.Contains(stderr.String(), tc.stderr):
				t.Errorf("stderr = %q, want %q", stderr.String(), tc.stderr)
			}
		})
	}
}

// TestConfigCommand prints the effective configuration and feeds it back in: the output
// is a valid config file that means the same.
func TestConfigCommand(t *testing.T) {
	path := writeConfig(t, `{"network": {"pinned": {"storage": 2345}}, "locator": {"extra": {"n": 3}}}`)
	args := []string{"--config", path, "--data-dir", "/flag/dir", "--locator-port", "0"}
	var stdout, stderr bytes.Buffer
	if code := realMain(append([]string{"config"}, args...), &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr.String())
	}
	want, _, err := parseRun(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var printed map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &printed); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout.String())
	}
	if printed["data_dir"] != "/flag/dir" {
		t.Errorf("data_dir = %v", printed["data_dir"])
	}
	again := daemon.DefaultConfig()
	if err := loadConfig(writeConfig(t, stdout.String()), &again); err != nil {
		t.Fatalf("the printed config does not load: %v", err)
	}
	if !reflect.DeepEqual(again, want) {
		t.Errorf("the printed config loads as\n%+v\nwant\n%+v", again, want)
	}
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestBinarySIGTERM builds the binary, runs a node, waits until its locator answers over
// the wire and stops it with SIGTERM: it exits 0 and says so in its JSON log.
func TestBinarySIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go tool: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "cocaine")
	build := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	dataDir := t.TempDir()
	port := freePort(t)
	stderr := &syncBuffer{}
	cmd := exec.Command(bin, "run", "--data-dir", dataDir, "--locator-port", strconv.Itoa(port), "--raft-port", "0", "--log-format", "json")
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed once Wait has returned waitErr
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
		t.Logf("cocaine's log:\n%s", stderr.String())
	})

	loc := []rpc.Endpoint{{Host: "127.0.0.1", Port: uint16(port)}}
	var id string
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		id, err = uuidOf(loc)
		if err == nil {
			break
		}
		select {
		case <-exited:
			t.Fatalf("cocaine exited before it answered: %v", waitErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the locator did not answer: %v", err)
		}
		<-tick.C
	}
	kept, err := os.ReadFile(filepath.Join(dataDir, "uuid"))
	if err != nil || strings.TrimSpace(string(kept)) != id {
		t.Errorf("locator uuid %q, data_dir/uuid %q (%v)", id, kept, err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("cocaine exited with %v after SIGTERM, want 0", waitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("cocaine did not exit after SIGTERM")
	}
	var stopped, ready bool
	sc := bufio.NewScanner(strings.NewReader(stderr.String()))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", sc.Text())
			continue
		}
		switch rec["msg"] {
		case "node stopped":
			stopped = rec["uuid"] == id
		case "node ready":
			ready = rec["locator"] == fmt.Sprintf("127.0.0.1:%d", port)
		}
	}
	if !stopped || !ready {
		t.Errorf("the log lacks \"node ready\" with the locator (%v) or \"node stopped\" with the uuid (%v)", ready, stopped)
	}
	if err := listenFree(port); err != nil {
		t.Errorf("the locator port is still taken: %v", err)
	}
}

func uuidOf(loc []rpc.Endpoint) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := rpc.Dial(ctx, loc, rpc.LocatorGraph, rpc.DialConfig{})
	if err != nil {
		return "", err
	}
	defer c.Close()
	ch, err := c.Call(ctx, "uuid")
	if err != nil {
		return "", err
	}
	a, err := ch.Get(ctx)
	if err != nil {
		return "", err
	}
	var id string
	if err := a.Scan(&id); err != nil {
		return "", err
	}
	if id == "" {
		return "", errors.New("empty uuid")
	}
	return id, nil
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func listenFree(port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return ln.Close()
}
