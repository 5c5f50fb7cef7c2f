package daemon_test

import (
	"fmt"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/services/logging"
)

// unicornNode reads [[value, version]] of path through the unicorn service: the value,
// and whether the node exists.
func unicornNode(t *testing.T, uc *rpc.Conn, path string) (any, bool) {
	t.Helper()
	var pair []any
	mustCall(t, uc, "get", []any{path}, &pair)
	if len(pair) != 2 {
		t.Fatalf("get %s = %v, want [value, version]", path, pair)
	}
	v, ok := pair[1].(int64)
	return pair[0], !ok || v >= 0
}

// clusterEntries returns list_filters' cluster entries (disposition 1), by id.
func clusterEntries(t *testing.T, lg *rpc.Conn) map[uint64][]any {
	t.Helper()
	var list []any
	mustCall(t, lg, "list_filters", nil, &list)
	out := map[uint64][]any{}
	for _, e := range list {
		if f := e.([]any); f[4] == uint64(logging.DispositionCluster) {
			out[f[2].(uint64)] = f
		}
	}
	return out
}

// TestLoggingClusterFilter drives cluster filters over TCP on one host: set through
// logging, they are unicorn nodes of the documented shape and decide for records; nodes
// written straight into unicorn act too; remove_filter and expiry delete them.
func TestLoggingClusterFilter(t *testing.T) {
	n, _ := loggingNode(t) // warnings and above by default
	lg := connect(t, n, "logging")
	uc := connect(t, n, "unicorn")
	folder := logging.DefaultUnicornPath

	before := time.Now().Unix()
	var id uint64
	mustCall(t, lg, "set_cluster_filter", []any{"app/", []any{"==", "user", "bob"}, 600}, &id)
	after := time.Now().Unix()
	path := folder + "/" + strconv.FormatUint(id, 10)

	t.Run("stored in unicorn", func(t *testing.T) {
		v, ok := unicornNode(t, uc, path)
		m, isMap := v.(map[string]any)
		if !ok || !isMap {
			t.Fatalf("node %s = %v (exists %v), want a map", path, v, ok)
		}
		dl, _ := m["deadline"].(uint64)
		if dl < uint64(before+600) || dl > uint64(after+600) {
			t.Errorf("deadline %v, want now + 600 s", m["deadline"])
		}
		delete(m, "deadline")
		want := map[string]any{"filter": []any{"==", "user", "bob"}, "id": id, "logger_name": "app/", "disposition": uint64(1)}
		if !reflect.DeepEqual(m, want) {
			t.Errorf("node %s = %v, want %v and a deadline", path, m, want)
		}
		e := clusterEntries(t, lg)[id]
		if len(e) != 5 || e[0] != "app/" || e[3] != dl {
			t.Errorf("list_filters entry %v, want app/ with the stored deadline %d and disposition 1", e, dl)
		}
	})
	t.Run("decides for records", func(t *testing.T) {
		bob, eve := []any{[]any{"user", "bob"}}, []any{[]any{"user", "eve"}}
		if !emitAck(t, lg, 1, "app/echo", "m", bob) {
			t.Error("info from bob under app/ rejected")
		}
		if emitAck(t, lg, 1, "app/echo", "m", eve) || emitAck(t, lg, 1, "other", "m", bob) {
			t.Error("the cluster filter accepts what it should not")
		}
	})
	t.Run("invalid filter", func(t *testing.T) {
		f := []any{"||", []any{"empty"}}
		_, local := call(t, lg, "set_filter", "app/", f, 60)
		_, cluster := call(t, lg, "set_cluster_filter", "app/", f, 60)
		if l, c := wireError(t, local), wireError(t, cluster); *l != *c {
			t.Errorf("set_cluster_filter = %v, want set_filter's %v", c, l)
		}
	})
	t.Run("written into unicorn", func(t *testing.T) {
		other := uint64(4242)
		p := folder + "/" + strconv.FormatUint(other, 10)
		value := map[string]any{"filter": []any{"severity", 1}, "deadline": uint64(time.Now().Unix() + 600),
			"id": other, "logger_name": "db/", "disposition": 1}
		mustCall(t, uc, "create", []any{p, value})
		eventually(t, callTimeout, func() error {
			if !emitAck(t, lg, 1, "db/x", "m") {
				return fmt.Errorf("the filter created in unicorn is not applied")
			}
			return nil
		})
		mustCall(t, uc, "del", []any{p, -1})
		eventually(t, callTimeout, func() error {
			if emitAck(t, lg, 1, "db/x", "m") {
				return fmt.Errorf("the filter deleted from unicorn still acts")
			}
			return nil
		})
	})
	t.Run("unparsable node deleted", func(t *testing.T) {
		p := folder + "/77"
		mustCall(t, uc, "create", []any{p, "not a filter"})
		eventually(t, callTimeout, func() error {
			if _, ok := unicornNode(t, uc, p); ok {
				return fmt.Errorf("%s is still there", p)
			}
			return nil
		})
	})
	t.Run("remove_filter", func(t *testing.T) {
		var ok bool
		mustCall(t, lg, "remove_filter", []any{id}, &ok)
		if !ok {
			t.Error("remove_filter of the cluster filter = false")
		}
		if _, exists := unicornNode(t, uc, path); exists {
			t.Error("the unicorn node survived remove_filter")
		}
		if _, listed := clusterEntries(t, lg)[id]; listed || emitAck(t, lg, 1, "app/echo", "m", []any{[]any{"user", "bob"}}) {
			t.Error("the removed cluster filter is still here")
		}
		if mustCall(t, lg, "remove_filter", []any{id}, &ok); ok {
			t.Error("remove_filter twice = true")
		}
	})
	t.Run("expiry", func(t *testing.T) {
		var short uint64
		mustCall(t, lg, "set_cluster_filter", []any{"tmp/", []any{"empty"}, 1}, &short)
		p := folder + "/" + strconv.FormatUint(short, 10)
		eventually(t, callTimeout, func() error {
			if _, ok := unicornNode(t, uc, p); ok {
				return fmt.Errorf("the expired node is still in unicorn")
			}
			if _, ok := clusterEntries(t, lg)[short]; ok {
				return fmt.Errorf("the expired filter is still listed")
			}
			return nil
		})
	})
}

// TestLoggingClusterFilterFolder: logging.unicorn_path moves the folder.
func TestLoggingClusterFilterFolder(t *testing.T) {
	cfg := testConfig(t)
	cfg.Logging.UnicornPath = "/test/log-filters"
	n := startNode(t, cfg)
	lg := connect(t, n, "logging")
	uc := connect(t, n, "unicorn")
	var id uint64
	mustCall(t, lg, "set_cluster_filter", []any{"app/", []any{"empty"}, 600}, &id)
	if _, ok := unicornNode(t, uc, cfg.Logging.UnicornPath+"/"+strconv.FormatUint(id, 10)); !ok {
		t.Errorf("no node for filter %d under %s", id, cfg.Logging.UnicornPath)
	}
	if _, ok := unicornNode(t, uc, logging.DefaultUnicornPath+"/"+strconv.FormatUint(id, 10)); ok {
		t.Errorf("filter %d stored under the default folder too", id)
	}
}
