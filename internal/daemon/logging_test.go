package daemon_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/services/logging"
)

// loggingNode runs a node whose logging service writes JSON lines to a file, drops
// debug records (verbosity 1) and by default accepts warnings and above.
func loggingNode(t *testing.T) (*node, string) {
	t.Helper()
	cfg := testConfig(t)
	path := filepath.Join(t.TempDir(), "records.jsonl")
	cfg.Logging = logging.Config{
		Verbosity:     1,
		Sinks:         []logging.SinkConfig{{Type: "file", Path: path}},
		DefaultFilter: []any{[]any{"severity", uint64(2)}},
	}
	return startNode(t, cfg), path
}

// records reads every complete line of the sink file.
func records(path string) ([]map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r map[string]any
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.UseNumber()
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("line %q: %w", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

// waitRecord polls the sink file (it is flushed every second) for the record with message.
func waitRecord(t *testing.T, path, message string) map[string]any {
	t.Helper()
	var found map[string]any
	eventually(t, callTimeout, func() error {
		rs, err := records(path)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r["message"] == message {
				found = r
				return nil
			}
		}
		return fmt.Errorf("no record %q among %d", message, len(rs))
	})
	return found
}

func emitAck(t *testing.T, c *rpc.Conn, args ...any) bool {
	t.Helper()
	var ok bool
	mustCall(t, c, "emit_ack", args, &ok)
	return ok
}

// TestLoggingEmit emits mute records and finds them in the sink with everything they
// carried.
func TestLoggingEmit(t *testing.T) {
	n, path := loggingNode(t)
	lg := connect(t, n, "logging")
	start := time.Now()

	// emit is mute: no reply. On a raw connection, a ping sent after it gets the first
	// reply frame.
	raw := dialRaw(t, resolve(t, n, "logging").Endpoints[0])
	attrs := []any{
		[]any{"user", "bob"}, []any{"n", -3}, []any{"big", uint64(math.MaxUint64)},
		[]any{"pi", 3.5}, []any{"ok", true}, []any{"none", nil},
	}
	raw.send(t, frame(1, 0, 2, "app/echo", "raw emit", attrs))
	raw.send(t, frame(2, rpc.ControlPing))
	if f := raw.next(t); f.Channel != 2 || f.Type != rpc.Value {
		t.Fatalf("first reply is [%d, %d], want the ping's [2, 0]: emit must be mute", f.Channel, f.Type)
	}

	// The same through the client: a mute call's channel is closed at once.
	ch, err := lg.Call(ctxT(t), "emit", 3, "app/other", "client emit")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Recv(ctxT(t)); err != rpc.ErrChannelClosed {
		t.Errorf("recv on emit = %v, want ErrChannelClosed", err)
	}
	// Rejected records (debug below verbosity, info below the default filter) never land.
	lg.Call(ctxT(t), "emit", 0, "app/echo", "dropped debug")
	lg.Call(ctxT(t), "emit", 1, "app/echo", "dropped info")
	lg.Call(ctxT(t), "emit", 2, "app/echo", "marker")

	r := waitRecord(t, path, "raw emit")
	want := map[string]any{
		"severity": json.Number("2"), "severity_name": "warning", "backend": "app/echo", "verbose": false,
		"attrs": map[string]any{
			"user": "bob", "n": json.Number("-3"), "big": json.Number("18446744073709551615"),
			"pi": json.Number("3.5"), "ok": true, "none": nil,
		},
	}
	for k, v := range want {
		if !reflect.DeepEqual(r[k], v) {
			t.Errorf("%s = %#v, want %#v", k, r[k], v)
		}
	}
	ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(r["time"]))
	if err != nil || ts.Before(start.Add(-time.Minute)) {
		t.Errorf("time = %v (%v), want the time of receipt", r["time"], err)
	}
	other := waitRecord(t, path, "client emit")
	if other["backend"] != "app/other" || other["severity_name"] != "error" {
		t.Errorf("client emit record = %v", other)
	}
	waitRecord(t, path, "marker")
	rs, err := records(path)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, r := range rs {
		if m := r["message"]; m == "dropped debug" || m == "dropped info" {
			t.Errorf("rejected record %q was written", m)
		}
		id, err := r["id"].(json.Number).Int64()
		if err != nil || id <= 0 {
			t.Errorf("id = %v", r["id"])
		}
		ids = append(ids, id)
	}
	if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Errorf("ids %v are not unique and increasing", ids)
	}
}

// TestLoggingFilters walks set_filter/remove_filter and checks with emit_ack which
// metafilter decides: the longest prefix with live filters, else the default one.
func TestLoggingFilters(t *testing.T) {
	n, _ := loggingNode(t)
	lg := connect(t, n, "logging")
	var verbosity int64
	mustCall(t, lg, "verbosity", nil, &verbosity)
	if verbosity != 1 {
		t.Errorf("verbosity = %d, want 1", verbosity)
	}

	type emit struct {
		severity int
		backend  string
		user     string // "" for no attributes
		want     bool
	}
	check := func(t *testing.T, emits []emit) {
		t.Helper()
		for _, e := range emits {
			args := []any{e.severity, e.backend, "m"}
			if e.user != "" {
				args = append(args, []any{[]any{"user", e.user}})
			}
			if got := emitAck(t, lg, args...); got != e.want {
				t.Errorf("emit_ack(%d, %q, user=%q) = %v, want %v", e.severity, e.backend, e.user, got, e.want)
			}
		}
	}
	setFilter := func(t *testing.T, logger string, filter []any) uint64 {
		t.Helper()
		var id uint64
		mustCall(t, lg, "set_filter", []any{logger, filter, 3600}, &id)
		return id
	}
	remove := func(t *testing.T, id uint64) bool {
		t.Helper()
		var ok bool
		mustCall(t, lg, "remove_filter", []any{id}, &ok)
		return ok
	}
	loggers := func(t *testing.T) []string {
		t.Helper()
		var names []string
		mustCall(t, lg, "list_loggers", nil, &names)
		return names
	}

	t.Run("default filter and verbosity", func(t *testing.T) {
		check(t, []emit{
			{0, "app/echo", "", false}, // below verbosity
			{1, "app/echo", "", false}, // the default filter wants severity >= 2
			{2, "app/echo", "", true},
			{3, "anything", "", true},
		})
		if got := loggers(t); !slices.Equal(got, []string{"core", "default"}) {
			t.Errorf("list_loggers = %q", got)
		}
	})

	var appID, echoID uint64
	before := time.Now().Unix()
	t.Run("prefix filter", func(t *testing.T) {
		appID = setFilter(t, "app/", []any{"empty"})
		check(t, []emit{
			{1, "app/echo", "", true},
			{1, "apple", "", false}, // "app/" is not a prefix of it
			{0, "app/echo", "", false},
		})
	})
	t.Run("longer prefix wins without fallback", func(t *testing.T) {
		echoID = setFilter(t, "app/echo", []any{"==", "user", "bob"})
		check(t, []emit{
			{1, "app/echo", "bob", true},
			{1, "app/echo", "eve", false},
			{3, "app/echo", "", false},     // the attribute is missing
			{1, "app/echo2", "eve", false}, // a plain string prefix
			{1, "app/other", "eve", true},  // still app/
		})
		if got := loggers(t); !slices.Equal(got, []string{"app/", "app/echo", "core", "default"}) {
			t.Errorf("list_loggers = %q", got)
		}
	})
	t.Run("list_filters", func(t *testing.T) {
		after := time.Now().Unix() + 1
		a, err := call(t, lg, "list_filters")
		if err != nil {
			t.Fatal(err)
		}
		var list []any
		if err := a.Scan(&list); err != nil {
			t.Fatal(err)
		}
		got := map[uint64][]any{}
		var defaults int
		for _, e := range list {
			f := e.([]any)
			if len(f) != 5 {
				t.Fatalf("filter entry %v has %d fields, want 5", f, len(f))
			}
			id := f[2].(uint64)
			got[id] = f
			if f[0] == "default" {
				defaults++
				if !reflect.DeepEqual(f[1], []any{"severity", uint64(2)}) || f[3] != uint64(math.MaxInt64) {
					t.Errorf("default filter = %v", f)
				}
			}
		}
		if defaults != 1 || len(list) != 3 {
			t.Errorf("list_filters = %v, want the default filter and two more", list)
		}
		for id, want := range map[uint64][]any{
			appID:  {"app/", []any{"empty"}},
			echoID: {"app/echo", []any{"==", "user", "bob"}},
		} {
			f := got[id]
			if f == nil {
				t.Errorf("filter %d missing from %v", id, list)
				continue
			}
			if f[0] != want[0] || !reflect.DeepEqual(f[1], want[1]) || f[4] != uint64(0) {
				t.Errorf("filter %d = %v, want logger %q, %v, local", id, f, want[0], want[1])
			}
			if dl, ok := f[3].(uint64); !ok || dl < uint64(before+3600) || dl > uint64(after+3600) {
				t.Errorf("filter %d deadline = %v, want now + 3600 s", id, f[3])
			}
		}
	})
	t.Run("remove_filter", func(t *testing.T) {
		if !remove(t, echoID) {
			t.Error("remove_filter of a live filter = false")
		}
		if remove(t, echoID) {
			t.Error("remove_filter twice = true")
		}
		if remove(t, 12345) {
			t.Error("remove_filter of an unknown id = true")
		}
		// Until the service prunes it (every second), the emptied app/echo metafilter
		// hands its records to the default one; then app/ decides for them again.
		eventually(t, callTimeout, func() error {
			if !emitAck(t, lg, 1, "app/echo", "m", []any{[]any{"user", "eve"}}) {
				return fmt.Errorf("app/ does not decide for app/echo yet")
			}
			if got := loggers(t); !slices.Equal(got, []string{"app/", "core", "default"}) {
				return fmt.Errorf("list_loggers = %q", got)
			}
			return nil
		})
		if !remove(t, appID) {
			t.Error("remove_filter of app/ = false")
		}
		check(t, []emit{{1, "app/echo", "", false}, {2, "app/echo", "", true}}) // the default
	})
	t.Run("invalid filters", func(t *testing.T) {
		for _, f := range []any{[]any{"nope"}, []any{}, "empty", []any{"||", []any{"empty"}}} {
			_, err := call(t, lg, "set_filter", "app/", f, 60)
			if e := wireError(t, err); e.Category != rpc.CategoryGeneric || e.Code != 22 {
				t.Errorf("set_filter(%v) = %v, want [12, 22]", f, e)
			}
		}
	})
	t.Run("set_verbosity is a legacy no-op", func(t *testing.T) {
		mustCall(t, lg, "set_verbosity", []any{3})
		mustCall(t, lg, "verbosity", nil, &verbosity)
		if verbosity != 1 {
			t.Errorf("verbosity after set_verbosity = %d, want 1", verbosity)
		}
	})
}

// TestLoggingNamedLog binds a logger name with get and emits through the channel.
func TestLoggingNamedLog(t *testing.T) {
	n, path := loggingNode(t)
	lg := connect(t, n, "logging")
	ctx := ctxT(t)
	named, err := lg.Call(ctx, "get", "app/named")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		severity int
		attrs    []any
		want     bool
	}{
		{1, nil, false},
		{2, nil, true},
		{3, []any{[]any{"k", "v"}}, true},
		{0, nil, false},
	} {
		t.Run(fmt.Sprintf("emit_ack %d", tc.severity), func(t *testing.T) {
			args := []any{tc.severity, "named ack"}
			if tc.attrs != nil {
				args = append(args, tc.attrs)
			}
			if err := named.SendName("emit_ack", args...); err != nil {
				t.Fatal(err)
			}
			m, err := named.Recv(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var ok bool
			if m.Name != "write" || m.Args.Scan(&ok) != nil || ok != tc.want {
				t.Errorf("reply %s %v, want write [%v]", m.Name, m.Args, tc.want)
			}
		})
	}
	if err := named.SendName("emit", 2, "named emit", []any{[]any{"a", 1}}); err != nil {
		t.Fatal(err)
	}
	r := waitRecord(t, path, "named emit")
	if r["backend"] != "app/named" || !reflect.DeepEqual(r["attrs"], map[string]any{"a": json.Number("1")}) {
		t.Errorf("named emit record = %v", r)
	}
	// The channel stays open: one more ack.
	if err := named.SendName("emit_ack", 3, "again"); err != nil {
		t.Fatal(err)
	}
	if m, err := named.Recv(ctx); err != nil || m.Name != "write" {
		t.Errorf("second ack = %v, %v", m, err)
	}
}

// TestLoggingBadAttributes: nil attribute values are accepted (logged as null); arrays
// and maps are a protocol error that closes the connection, as the original's decoder
// does, without disturbing other connections.
func TestLoggingBadAttributes(t *testing.T) {
	n, path := loggingNode(t)
	other := connect(t, n, "logging")
	ep := resolve(t, n, "logging").Endpoints[0]
	for _, tc := range []struct {
		name   string
		method uint64
		attrs  any
		closed bool
	}{
		{"nil value via emit_ack", 3, []any{[]any{"k", nil}}, false},
		{"array value via emit", 0, []any{[]any{"k", []any{1}}}, true},
		{"array value via emit_ack", 3, []any{[]any{"k", []any{}}}, true},
		{"map value", 3, []any{[]any{"k", map[string]any{"a": 1}}}, true},
		{"pair of three", 3, []any{[]any{"k", 1, 2}}, true},
		{"a map instead of pairs", 3, map[string]any{"k": "v"}, true},
		{"nil attribute list", 3, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := dialRaw(t, ep)
			raw.send(t, frame(1, tc.method, 2, "app/attrs", tc.name, tc.attrs))
			if tc.closed {
				raw.expectClosed(t)
			} else {
				f := raw.next(t)
				var ok bool
				if f.Channel != 1 || f.Type != rpc.Value || rpc.Args(f.Args).Scan(&ok) != nil || !ok {
					t.Fatalf("reply [%d, %d, % x], want value [true]", f.Channel, f.Type, f.Args)
				}
				if r := waitRecord(t, path, tc.name); !reflect.DeepEqual(r["attrs"], map[string]any{"k": nil}) {
					t.Errorf("attrs = %v, want k: null", r["attrs"])
				}
			}
			var v int64
			mustCall(t, other, "verbosity", nil, &v)
		})
	}
}
