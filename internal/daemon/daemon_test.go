package daemon_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cocaine/cocaine/internal/daemon"
	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/services/logging"
	"github.com/cocaine/cocaine/services/storage"
)

// Graph fragments of protocol.md §3.5, rendered as renderState does.
const (
	gP = `{0: ["value", {}], 1: ["error", {}]}`
	gS = `{0: ["write", nil], 1: ["error", {}], 2: ["close", {}]}`
	// gX are the control entries inside a transition state.
	gX = `65532: ["goaway", {}], 65533: ["ping", {}], 65534: ["settings", {}], 65535: ["revoke", {}]`
)

// controlRoots are the control methods every 0.12.14 root graph ends with.
var controlRoots = map[uint64]string{
	65532: `["goaway", {}, ` + gP + `]`,
	65533: `["ping", {}, ` + gP + `]`,
	65534: `["settings", {}, ` + gP + `]`,
	65535: `["revoke", {}, ` + gP + `]`,
}

func withControl(m map[uint64]string) map[uint64]string {
	for id, e := range controlRoots {
		m[id] = e
	}
	return m
}

// TestResolveCoreServices resolves every core service through the locator and checks what
// a client learns: where it lives, its protocol version and its exact graph.
func TestResolveCoreServices(t *testing.T) {
	n := startNode(t, testConfig(t))
	for _, tc := range []struct {
		name    string
		version uint64
		graph   map[uint64]string
	}{
		{"locator", 3, withControl(map[uint64]string{
			0: `["resolve", {}, ` + gP + `]`,
			1: `["connect", {}, ` + gS + `]`,
			2: `["refresh", {}, ` + gP + `]`,
			3: `["cluster", {}, ` + gP + `]`,
			4: `["publish", {0: ["discard", {}], ` + gX + `}, ` + gP + `]`,
			5: `["routing", {0: ["discard", {}], ` + gX + `}, ` + gS + `]`,
			6: `["uuid", {}, ` + gP + `]`,
		})},
		{"logging", 2, withControl(map[uint64]string{
			0: `["emit", {}, {}]`,
			1: `["verbosity", {}, ` + gP + `]`,
			2: `["set_verbosity", {}, ` + gP + `]`,
			3: `["emit_ack", {}, ` + gP + `]`,
			4: `["get", {0: ["emit", nil], 1: ["emit_ack", nil], ` + gX + `}, ` + gS + `]`,
			5: `["list_loggers", {}, ` + gP + `]`,
			6: `["set_filter", {}, ` + gP + `]`,
			7: `["remove_filter", {}, ` + gP + `]`,
			8: `["list_filters", {}, ` + gP + `]`,
			9: `["set_cluster_filter", {}, ` + gP + `]`,
		})},
		{"storage", 1, withControl(map[uint64]string{
			0: `["read", {}, ` + gP + `]`,
			1: `["write", {}, ` + gP + `]`,
			2: `["remove", {}, ` + gP + `]`,
			3: `["find", {}, ` + gP + `]`,
		})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := resolve(t, n, tc.name)
			if len(r.Endpoints) != 1 || r.Endpoints[0].Host != "127.0.0.1" || r.Endpoints[0].Port == 0 {
				t.Errorf("endpoints = %v, want one on 127.0.0.1 with a real port", r.Endpoints)
			}
			if r.Version != tc.version {
				t.Errorf("version = %d, want %d", r.Version, tc.version)
			}
			got := renderGraph(r.Graph)
			for id, want := range tc.graph {
				if got[id] != want {
					t.Errorf("method %d = %s, want %s", id, got[id], want)
				}
			}
			for id, e := range got {
				if _, ok := tc.graph[id]; !ok {
					t.Errorf("unexpected method %d: %s", id, e)
				}
			}
			// The endpoint answers the control ping, which every graph lists.
			c, err := rpc.Dial(ctxT(t), r.Endpoints, r.Graph, rpc.DialConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if a, err := call(t, c, "ping"); err != nil || a.Len() != 0 {
				t.Errorf("ping = %v, %v; want an empty value", a, err)
			}
		})
	}
	if got, want := resolve(t, n, "locator").Endpoints, n.locator(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the locator resolves itself to %v, but listens on %v", got, want)
	}
}

func TestResolveErrorsAndSeeds(t *testing.T) {
	n := startNode(t, testConfig(t))
	storageEPs := resolve(t, n, "storage").Endpoints
	for _, tc := range []struct {
		name, service, seed string
		wantErr             bool
	}{
		{"unknown name", "no-such-service", "", true},
		{"unknown name with a seed", "no-such-service", "seed", true},
		{"empty name", "", "", true},
		{"seed for a plain service", "storage", "some-seed", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := rpc.Resolve(ctxT(t), n.locator(), tc.service, tc.seed, rpc.DialConfig{})
			if !tc.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(r.Endpoints) != fmt.Sprint(storageEPs) || r.Version != 1 {
					t.Errorf("got %v v%d, want %v v1", r.Endpoints, r.Version, storageEPs)
				}
				return
			}
			e := wireError(t, err)
			if e.Category != 10 || e.Code != 1 || e.Message != "service is not available" {
				t.Errorf("got [%d, %d] %q, want [10, 1] \"service is not available\"", e.Category, e.Code, e.Message)
			}
		})
	}
	// The same locator connection keeps working after an error reply.
	loc := dialLocator(t, n)
	if _, err := rpc.ResolveOn(ctxT(t), loc, "nope", ""); !errors.Is(err, rpc.ErrServiceUnavailable) {
		t.Fatalf("resolve nope: %v", err)
	}
	if _, err := rpc.ResolveOn(ctxT(t), loc, "logging", ""); err != nil {
		t.Fatalf("resolve after an error reply: %v", err)
	}
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func locatorUUID(t *testing.T, n *node) string {
	t.Helper()
	var id string
	mustCall(t, dialLocator(t, n), "uuid", nil, &id)
	return id
}

// TestUUIDSurvivesRestart checks that the uuid is generated once, kept in data_dir/uuid
// and served by the locator across restarts on the same data dir.
func TestUUIDSurvivesRestart(t *testing.T) {
	cfg := testConfig(t)
	first := startNode(t, cfg)
	id := locatorUUID(t, first)
	if !uuidPattern.MatchString(id) {
		t.Errorf("uuid %q is not a lowercase RFC 4122 v4 uuid", id)
	}
	data, err := os.ReadFile(filepath.Join(cfg.DataDir, "uuid"))
	if err != nil {
		t.Fatal(err)
	}
	if kept := strings.TrimSpace(string(data)); kept != id {
		t.Errorf("data_dir/uuid holds %q, the locator says %q", kept, id)
	}
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	second := startNode(t, cfg)
	if again := locatorUUID(t, second); again != id {
		t.Errorf("after a restart the uuid is %q, was %q", again, id)
	}

	t.Run("configured uuid wins", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.UUID = "node-from-config"
		if got := locatorUUID(t, startNode(t, cfg)); got != cfg.UUID {
			t.Errorf("uuid = %q, want %q", got, cfg.UUID)
		}
	})
	t.Run("empty uuid file is refused", func(t *testing.T) {
		cfg := testConfig(t)
		if err := os.WriteFile(filepath.Join(cfg.DataDir, "uuid"), []byte("\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := daemon.New(cfg, testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "is empty") {
			t.Errorf("run = %v, want an error about the empty uuid file", err)
		}
	})
}

// TestCleanShutdown stops a node that has clients connected and checks that it leaves
// nothing behind: Run returns nil, the ports can be bound again, no goroutine is left
// and the storage database can be opened by someone else.
func TestCleanShutdown(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg := testConfig(t)
	n := startNode(t, cfg)
	var eps []rpc.Endpoint
	for _, name := range []string{"locator", "logging", "storage"} {
		eps = append(eps, n.d.Endpoint(name)...)
	}
	// Clients that are still connected when the node stops, one with a stream open.
	st := connect(t, n, "storage")
	mustCall(t, st, "write", []any{"c", "k", []byte("v")})
	lg := connect(t, n, "logging")
	named, err := lg.Call(ctxT(t), "get", "app/open")
	if err != nil {
		t.Fatal(err)
	}
	raw := dialRaw(t, n.locator()[0])
	raw.send(t, []byte{0x94, 0x01}) // half a frame

	if err := n.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	for _, c := range []*rpc.Conn{st, lg} {
		select {
		case <-c.Done():
		case <-time.After(callTimeout):
			t.Fatal("a client connection is still open after the node stopped")
		}
	}
	if _, err := named.Recv(ctxT(t)); err == nil {
		t.Error("the named logger stream is still open")
	}
	raw.expectClosed(t)
	for _, ep := range eps {
		if err := portFree(ep); err != nil {
			t.Errorf("port of %v still taken: %v", ep, err)
		}
	}
	st.Close()
	lg.Close()
	raw.Close()
	noGoroutineLeak(t, before)

	// The write survived: the node's state is on disk in its Raft log and snapshots.
	again := startNode(t, cfg)
	st = connect(t, again, "storage")
	var v []byte
	mustCall(t, st, "read", []any{"c", "k"}, &v)
	if string(v) != "v" {
		t.Errorf("read c/k after a restart = %q", v)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*daemon.Config)
		want   []string // each must appear in the error; none means valid
	}{
		{"defaults", func(c *daemon.Config) {}, nil},
		{"no data dir", func(c *daemon.Config) { c.DataDir = "" }, []string{"data_dir is required"}},
		{"uuid with a slash", func(c *daemon.Config) { c.UUID = "a/b" }, []string{`uuid "a/b"`}},
		{"bad endpoint", func(c *daemon.Config) { c.Network.Endpoint = "localhost" },
			[]string{`network.endpoint "localhost" is not an IP address`}},
		{"bad advertise", func(c *daemon.Config) { c.Network.Advertise = []string{"0.0.0.0"} },
			[]string{`network.advertise: "0.0.0.0"`}},
		{"port out of range", func(c *daemon.Config) { c.Network.Pinned = map[string]int{"locator": 70000} },
			[]string{"network.pinned.locator: port 70000 is out of range"}},
		{"port conflict", func(c *daemon.Config) { c.Network.Pinned = map[string]int{"locator": 10053, "storage": 10053} },
			[]string{"both use port 10053"}},
		{"port 0 twice is fine", func(c *daemon.Config) { c.Network.Pinned = map[string]int{"locator": 0, "storage": 0} }, nil},
		{"shared needs two numbers", func(c *daemon.Config) { c.Network.Shared = []int{10000} },
			[]string{"network.shared must be [min, max], got 1 numbers"}},
		{"shared reversed", func(c *daemon.Config) { c.Network.Shared = []int{20000, 10000} },
			[]string{"network.shared [20000, 10000) is not a valid port range"}},
		{"shared past 65535", func(c *daemon.Config) { c.Network.Shared = []int{60000, 70000} },
			[]string{"network.shared [60000, 70000)"}},
		{"negative frame size", func(c *daemon.Config) { c.RPC.MaxFrameSize = -1 }, []string{"rpc.max_frame_size"}},
		{"file sink without path", func(c *daemon.Config) { c.Logging.Sinks = []logging.SinkConfig{{Type: "file"}} },
			[]string{"logging.sinks[0]: a file sink needs a path"}},
		{"unknown sink", func(c *daemon.Config) { c.Logging.Sinks = []logging.SinkConfig{{Type: "syslog"}} },
			[]string{`logging.sinks[0]: unknown type "syslog"`}},
		{"bad verbosity", func(c *daemon.Config) { c.Logging.Verbosity = 7 }, []string{"logging.verbosity"}},
		{"bad default filter", func(c *daemon.Config) { c.Logging.DefaultFilter = []any{[]any{"nope"}} },
			[]string{"logging.default_filter"}},
		{"negative value size", func(c *daemon.Config) { c.Storage.MaxValueSize = -1 }, []string{"max_value_size"}},
		{"replicated value too large", func(c *daemon.Config) { c.Storage.MaxValueSize = 64 << 20 }, []string{"storage.max_value_size"}},
		{"even voters", func(c *daemon.Config) { c.Raft.Voters = 4 }, []string{"voters must be 1, 3, 5 or 7, got 4"}},
		{"election below heartbeat", func(c *daemon.Config) {
			c.Raft.HeartbeatTimeout = daemon.Duration(time.Second)
			c.Raft.ElectionTimeout = daemon.Duration(100 * time.Millisecond)
		}, []string{"election timeout (100ms) must be equal or greater than heartbeat timeout (1s)"}},
		{"bad join endpoint", func(c *daemon.Config) { c.Raft.Join = []string{"10.0.0.1:x"} }, []string{`raft.join: "10.0.0.1:x" is not a locator endpoint`}},
		{"join without a port", func(c *daemon.Config) { c.Raft.Join = []string{"10.0.0.1"} }, nil},
		{"unspecified raft advertise", func(c *daemon.Config) { c.Raft.Advertise = "0.0.0.0:10052" }, []string{"unspecified address"}},
		{"lease TTL too short", func(c *daemon.Config) { c.Unicorn.SessionLeaseTTL = daemon.Duration(time.Second) }, []string{"session_lease_ttl"}},
		{"everything at once", func(c *daemon.Config) {
			c.Network.Endpoint = "not-an-ip"
			c.Network.Pinned = map[string]int{"locator": 5000, "logging": 5000}
			c.Network.Shared = []int{9, 3}
			c.Logging.Sinks = []logging.SinkConfig{{Type: "file"}, {Type: "stderr", Path: "x"}}
		}, []string{
			`network.endpoint "not-an-ip"`,
			"both use port 5000",
			"network.shared [9, 3)",
			"logging.sinks[0]: a file sink needs a path",
			"logging.sinks[1]: a stderr sink takes no path",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := daemon.DefaultConfig()
			cfg.DataDir = "/nonexistent/cocaine"
			tc.mutate(&cfg)
			err := cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q, missing %q", err, w)
				}
			}
			if got := countLeaves(err); got < len(tc.want) {
				t.Errorf("want %d separate errors, got %d: %v", len(tc.want), got, err)
			}
			_, nerr := daemon.New(cfg, nil)
			if nerr == nil || !strings.HasPrefix(nerr.Error(), "config: ") {
				t.Fatalf("New = %v, want the validation error", nerr)
			}
			for _, w := range tc.want {
				if !strings.Contains(nerr.Error(), w) {
					t.Errorf("New = %q, missing %q", nerr, w)
				}
			}
		})
	}
}

// countLeaves counts the errors that errors.Join put together, however nested.
func countLeaves(err error) int {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		n := 0
		for _, e := range j.Unwrap() {
			n += countLeaves(e)
		}
		return n
	}
	return 1
}

// TestPinnedPortInUse starts a node whose storage port is taken: Run fails naming the
// service and the port, leaves no goroutine behind, frees the ports it bound and releases
// the database.
func TestPinnedPortInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.Addr().(*net.TCPAddr).Port
	locPort := freePort(t)

	before := runtime.NumGoroutine()
	cfg := testConfig(t)
	cfg.Network.Pinned = map[string]int{"locator": locPort, "storage": port}
	d, err := daemon.New(cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	err = d.Run(t.Context())
	if err == nil {
		t.Fatal("Run = nil, want a listen error")
	}
	want := "storage: listen on pinned port " + strconv.Itoa(port)
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("Run = %q, want it to contain %q and the cause", err, want)
	}
	select {
	case <-d.Ready():
		t.Error("Ready is closed although the node never started")
	default:
	}
	if err := portFree(rpc.Endpoint{Host: "127.0.0.1", Port: uint16(locPort)}); err != nil {
		t.Errorf("the locator's port is still bound: %v", err)
	}
	db, err := storage.OpenBolt(filepath.Join(cfg.DataDir, "storage.db"), storage.BoltOptions{})
	if err != nil {
		t.Fatalf("the database is still locked: %v", err)
	}
	db.Close()
	noGoroutineLeak(t, before)
}
