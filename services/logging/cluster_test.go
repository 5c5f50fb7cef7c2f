package logging

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// TestClusterFilterStoredShape: set_cluster_filter stores {filter, deadline, id,
// logger_name, disposition: 1} at <unicorn_path>/<id>, and list_filters shows the same.
func TestClusterFilterStoredShape(t *testing.T) {
	for _, tc := range []struct {
		name         string
		folder       string // unicorn_path; "" is the default
		logger       string
		filter       any
		ttl          uint64
		wantFilter   any
		wantDeadline uint64
	}{
		{"severity", "", "app/", arr("severity", 1), 60, arr("severity", uint64(1)), uint64(epoch.Unix()) + 60},
		{"nested", "", "app/echo", arr("||", arr("==", "user", "bob"), arr("<", "n", -5)), 3600,
			arr("||", arr("==", "user", "bob"), arr("<", "n", int64(-5))), uint64(epoch.Unix()) + 3600},
		{"empty logger and ttl 0", "", "", arr("empty"), 0, arr("empty"), uint64(epoch.Unix())},
		{"ttl past the year 9999", "", "core", arr("traced"), math.MaxUint64, arr("traced"), maxDeadline},
		{"own folder", "/my/filters", "app/", arr("e", "x"), 1, arr("e", "x"), uint64(epoch.Unix()) + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sv := serveLogging(t, newMemStore(), func(c *Config) { c.UnicornPath = tc.folder })
			id := sv.setCluster(t, tc.logger, tc.filter, tc.ttl)
			folder := tc.folder
			if folder == "" {
				folder = DefaultUnicornPath
			}
			path := fmt.Sprintf("%s/%d", folder, id)
			value, ok := sv.store.get(path)
			if !ok {
				t.Fatalf("no node at %s; the store has %q", path, sv.store.paths())
			}
			got, err := rpc.Unmarshal(value)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]any{"filter": tc.wantFilter, "deadline": tc.wantDeadline, "id": id,
				"logger_name": tc.logger, "disposition": uint64(1)}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("stored %#v, want %#v", got, want)
			}
			entry := sv.listed(t)[id]
			wantEntry := []any{tc.logger, tc.wantFilter, id, tc.wantDeadline, uint64(DispositionCluster)}
			if !reflect.DeepEqual(entry, wantEntry) {
				t.Errorf("list_filters entry %v, want %v", entry, wantEntry)
			}
		})
	}
}

// TestClusterFilterStoredRoundTrip: what encodeStored writes, decodeStored reads back.
func TestClusterFilterStoredRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name     string
		deadline time.Time
	}{
		{"a deadline", epoch.Add(time.Hour)},
		{"never", time.Time{}},
		{"the last second", time.Unix(maxDeadline, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := FilterInfo{Logger: "app/", Filter: mustParse(t, arr("xor", arr("e", "a"), arr("!=", "b", 1.5))),
				ID: 42, Deadline: tc.deadline, Disposition: DispositionCluster}
			b, err := encodeStored(in)
			if err != nil {
				t.Fatal(err)
			}
			out, err := decodeStored(b)
			if err != nil {
				t.Fatal(err)
			}
			if out.Logger != in.Logger || out.ID != in.ID || !out.Deadline.Equal(in.Deadline) ||
				out.Disposition != DispositionCluster || !reflect.DeepEqual(out.Filter.Repr(), in.Filter.Repr()) {
				t.Errorf("decoded %+v, want %+v", out, in)
			}
		})
	}
}

// TestClusterFilterInvalid: a bad filter gets exactly set_filter's error, and nothing is
// stored.
func TestClusterFilterInvalid(t *testing.T) {
	for _, store := range []*memStore{newMemStore(), nil} {
		sv := serveLogging(t, store, nil)
		for _, f := range []any{arr("nope"), arr(), "empty", arr("||", arr("empty")), arr("severity", "x")} {
			_, local := sv.call(t, "set_filter", "app/", f, 60)
			_, cluster := sv.call(t, "set_cluster_filter", "app/", f, 60)
			l, c := wireError(t, local), wireError(t, cluster)
			if *l != *c || l.Category != rpc.CategoryGeneric || l.Code != 22 {
				t.Errorf("filter %v: set_cluster_filter = %v, set_filter = %v; want both the same [12, 22]", f, c, l)
			}
		}
		if store != nil && (store.count("Create") != 0 || len(store.paths()) != 0) {
			t.Errorf("invalid filters reached the store: %q", store.paths())
		}
		if n := len(sv.listed(t)); n != 1 {
			t.Errorf("list_filters has %d entries, want the default only", n)
		}
	}
}

// TestClusterFilterNoStore: without a store set_cluster_filter says unicorn is needed, and
// remove_filter still works for local filters.
func TestClusterFilterNoStore(t *testing.T) {
	sv := serveLogging(t, nil, nil)
	_, err := sv.call(t, "set_cluster_filter", "app/", arr("empty"), 60)
	if e := wireError(t, err); e.Category != rpc.CategoryPlugins || e.Code != 1 || !strings.Contains(e.Message, "unicorn") {
		t.Errorf("set_cluster_filter = %v, want [8, 1] saying unicorn is needed", e)
	}
	var id uint64
	sv.mustCall(t, "set_filter", []any{"app/", arr("empty"), 60}, &id)
	if !sv.remove(t, id) || sv.remove(t, id) {
		t.Error("remove_filter of a local filter, twice: want true then false")
	}
}

// TestClusterFilterActs: a cluster filter acts on the host that set it at once, and on
// another host (played by the store) once its watch has seen it; deleting the node ends
// it everywhere.
func TestClusterFilterActs(t *testing.T) {
	store := newMemStore()
	here := serveLogging(t, store, nil)
	there := serveLogging(t, store, nil)
	if here.accepts(t, 1, "app/echo") {
		t.Fatal("info accepted before any filter")
	}
	id := here.setCluster(t, "app/", arr("severity", 1), 600)
	if !here.accepts(t, 1, "app/echo") {
		t.Error("the cluster filter does not act at once on the host that set it")
	}
	eventually(t, func() error {
		if !there.accepts(t, 1, "app/echo") {
			return fmt.Errorf("the other host does not apply filter %d", id)
		}
		return nil
	})
	if e := there.listed(t)[id]; len(e) != 5 || e[0] != "app/" || e[4] != uint64(DispositionCluster) {
		t.Errorf("the other host lists %v, want app/ with disposition 1", e)
	}
	if there.accepts(t, 1, "other") || there.accepts(t, 0, "app/echo") {
		t.Error("the cluster filter accepts outside its logger or below its severity")
	}

	// Another host writes one (say, through unicorn directly).
	other := uint64(777)
	store.put(nodePath(other), storedFilter(t, other, "db/", arr("empty"), epoch.Add(time.Hour)))
	for _, sv := range []*server{here, there} {
		eventually(t, func() error {
			if !sv.accepts(t, 0, "db/x") {
				return fmt.Errorf("filter %d from elsewhere not applied", other)
			}
			return nil
		})
	}

	store.del(nodePath(id))
	store.del(nodePath(other))
	for _, sv := range []*server{here, there} {
		eventually(t, func() error {
			if sv.accepts(t, 1, "app/echo") || sv.accepts(t, 0, "db/x") {
				return fmt.Errorf("deleted cluster filters still act")
			}
			if n := len(sv.listed(t)); n != 1 {
				return fmt.Errorf("list_filters has %d entries, want the default only", n)
			}
			return nil
		})
	}
}

// TestClusterFilterExpiry: an expired filter's node is deleted from the store and the
// filter dropped; a node that has expired already is deleted and never applied.
func TestClusterFilterExpiry(t *testing.T) {
	store := newMemStore()
	sv := serveLogging(t, store, nil)
	id := sv.setCluster(t, "app/", arr("severity", 0), 60)
	sv.clk.Advance(60 * time.Second) // the deadline itself is still live
	if !sv.accepts(t, 0, "app/x") {
		t.Error("a cluster filter at its deadline does not act")
	}
	sv.clk.Advance(time.Second)
	eventually(t, func() error {
		if _, ok := store.get(nodePath(id)); ok {
			return fmt.Errorf("the expired node %d is still stored", id)
		}
		if _, ok := sv.listed(t)[id]; ok {
			return fmt.Errorf("the expired filter %d is still listed", id)
		}
		return nil
	})
	if sv.accepts(t, 0, "app/x") {
		t.Error("an expired cluster filter still acts")
	}

	stale := uint64(99)
	store.put(nodePath(stale), storedFilter(t, stale, "app/", arr("empty"), sv.clk.Now().Add(-time.Second)))
	eventually(t, func() error {
		if _, ok := store.get(nodePath(stale)); ok {
			return fmt.Errorf("the stale node is still stored")
		}
		return nil
	})
	if _, ok := sv.listed(t)[stale]; ok || sv.accepts(t, 0, "app/x") {
		t.Error("a node that had expired was applied")
	}
}

// TestClusterFilterUnparsable: a child of the folder that is not a cluster filter is
// deleted and never applied; nodes that are not children of the folder are left alone.
func TestClusterFilterUnparsable(t *testing.T) {
	good := func(t *testing.T) map[string]any {
		return map[string]any{"filter": arr("empty"), "deadline": uint64(epoch.Unix()) + 600, "id": uint64(5),
			"logger_name": "app/", "disposition": uint64(1)}
	}
	with := func(key string, v any) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			m := good(t)
			if v == nil {
				delete(m, key)
			} else {
				m[key] = v
			}
			return stored(t, m)
		}
	}
	raw := func(b ...byte) func(*testing.T) []byte { return func(*testing.T) []byte { return b } }
	for _, tc := range []struct {
		name  string
		node  string // below the folder
		value func(t *testing.T) []byte
	}{
		{"not msgpack", "5", raw(0xc1)},
		{"trailing bytes", "5", func(t *testing.T) []byte { return append(stored(t, good(t)), 0xc0) }},
		{"nil, as an implicit parent", "5", raw(0xc0)},
		{"an array", "5", func(t *testing.T) []byte { b, _ := rpc.Marshal(arr("empty")); return b }},
		{"no filter", "5", with("filter", nil)},
		{"bad filter", "5", with("filter", arr("nope"))},
		{"filter too deep", "5", with("filter", nest(MaxFilterDepth+1, arr("empty")))},
		{"no deadline", "5", with("deadline", nil)},
		{"negative deadline", "5", with("deadline", int64(-1))},
		{"string deadline", "5", with("deadline", "soon")},
		{"no id", "5", with("id", nil)},
		{"id of another node", "5", with("id", uint64(6))},
		{"id 0", "0", with("id", uint64(0))},
		{"no logger_name", "5", with("logger_name", nil)},
		{"logger_name not a string", "5", with("logger_name", uint64(3))},
		{"no disposition", "5", with("disposition", nil)},
		{"local disposition", "5", with("disposition", uint64(0))},
		{"name not a number", "five", with("id", uint64(5))},
		{"name not canonical", "05", with("id", uint64(5))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := newMemStore()
			keep := []string{nodePath(5) + "/child", "/elsewhere/5", nodePath(8)}
			store.put(keep[0], stored(t, good(t)))
			store.put(keep[1], stored(t, good(t)))
			store.put(keep[2], storedFilter(t, 8, "db/", arr("empty"), epoch.Add(time.Hour)))
			bad := DefaultUnicornPath + "/" + tc.node
			store.put(bad, tc.value(t))
			sv := serveLogging(t, store, nil)
			eventually(t, func() error {
				if got := store.paths(); !slices.Equal(got, slices.Sorted(slices.Values(keep))) {
					return fmt.Errorf("the store has %q, want %q", got, keep)
				}
				return nil
			})
			list := sv.listed(t)
			if _, ok := list[8]; !ok || len(list) != 2 {
				t.Errorf("list_filters = %v, want the default and filter 8", list)
			}
			if sv.accepts(t, 0, "app/x") {
				t.Error("the bad node acts as a filter")
			}
		})
	}
}

// TestRemoveFilterSemantics: remove_filter removes local filters here (never asking the
// store), cluster filters from the store and here, and answers false only when the id
// was found nowhere; a store failure changes nothing.
func TestRemoveFilterSemantics(t *testing.T) {
	for _, tc := range []struct {
		name string
		hold bool // this host's watch hears nothing
		// setup returns the id to remove.
		setup   func(t *testing.T, sv *server) uint64
		want    bool
		removes int // store.Remove calls remove_filter makes
	}{
		{"local filter", false, func(t *testing.T, sv *server) uint64 {
			var id uint64
			sv.mustCall(t, "set_filter", []any{"app/", arr("empty"), 60}, &id)
			return id
		}, true, 0},
		{"local filter, the store down", false, func(t *testing.T, sv *server) uint64 {
			var id uint64
			sv.mustCall(t, "set_filter", []any{"app/", arr("empty"), 60}, &id)
			sv.store.setDown(true)
			return id
		}, true, 0},
		{"cluster filter", false, func(t *testing.T, sv *server) uint64 {
			return sv.setCluster(t, "app/", arr("empty"), 60)
		}, true, 1},
		{"only in the store", true, func(t *testing.T, sv *server) uint64 {
			sv.store.put(nodePath(31), storedFilter(t, 31, "app/", arr("empty"), epoch.Add(time.Hour)))
			return 31
		}, true, 1},
		{"only here", false, func(t *testing.T, sv *server) uint64 {
			id := sv.setCluster(t, "app/", arr("empty"), 60)
			sv.store.drop(nodePath(id))
			return id
		}, true, 1},
		{"nowhere", false, func(t *testing.T, sv *server) uint64 { return 12345 }, false, 1},
		{"default filter", false, func(t *testing.T, sv *server) uint64 {
			for id, e := range sv.listed(t) {
				if e[0] == DefaultLogger {
					return id
				}
			}
			t.Fatal("no default filter")
			return 0
		}, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := newMemStore()
			store.hold = tc.hold
			sv := serveLogging(t, store, nil)
			id := tc.setup(t, sv)
			before := store.count("Remove")
			if got := sv.remove(t, id); got != tc.want {
				t.Errorf("remove_filter = %v, want %v", got, tc.want)
			}
			if n := store.count("Remove") - before; n != tc.removes {
				t.Errorf("remove_filter called the store's Remove %d times, want %d", n, tc.removes)
			}
			store.setDown(false) // for the second remove_filter, which asks the store
			if _, ok := sv.listed(t)[id]; ok {
				t.Error("still listed")
			}
			if _, ok := store.get(nodePath(id)); ok {
				t.Error("still stored")
			}
			if sv.remove(t, id) {
				t.Error("remove_filter twice = true")
			}
		})
	}
}

// TestRemoveClusterFilterStoreDown: with the store away, removing a cluster filter fails
// clearly and changes nothing; once it is back the removal goes through.
func TestRemoveClusterFilterStoreDown(t *testing.T) {
	store := newMemStore()
	sv := serveLogging(t, store, nil)
	id := sv.setCluster(t, "app/", arr("empty"), 60)
	store.setDown(true)
	_, err := sv.call(t, "remove_filter", id)
	if e := wireError(t, err); e.Category != rpc.CategoryUnicorn || e.Code != 10 || !strings.Contains(e.Message, "remove_filter") {
		t.Errorf("remove_filter with the store down = %v, want [11, 10] naming remove_filter", e)
	}
	if _, ok := sv.listed(t)[id]; !ok || !sv.accepts(t, 0, "app/x") {
		t.Error("a failed remove_filter dropped the local copy")
	}
	store.setDown(false)
	if !sv.remove(t, id) {
		t.Error("remove_filter after the store is back = false")
	}
	if _, ok := store.get(nodePath(id)); ok || sv.accepts(t, 0, "app/x") {
		t.Error("the cluster filter survived its removal")
	}
}

// TestClusterStoreDown: with the store away set_cluster_filter fails clearly, logging
// goes on, the watch keeps retrying, and once the store is back everything that changed
// meanwhile is resynced: new nodes applied, vanished ones dropped.
func TestClusterStoreDown(t *testing.T) {
	store := newMemStore()
	store.setDown(true)
	sv := serveLogging(t, store, nil)
	_, err := sv.call(t, "set_cluster_filter", "app/", arr("empty"), 60)
	e := wireError(t, err)
	if e.Category != rpc.CategoryUnicorn || e.Code != 10 || !strings.Contains(e.Message, "set_cluster_filter") ||
		!strings.Contains(e.Message, "connection loss") {
		t.Errorf("set_cluster_filter with the store down = %v, want [11, 10] naming the call and the cause", e)
	}
	if n := len(sv.listed(t)); n != 1 {
		t.Errorf("a refused cluster filter was registered: %d entries", n)
	}
	if !sv.accepts(t, 2, "app/x") || sv.accepts(t, 1, "app/x") {
		t.Error("logging does not go on by the default filter while the store is down")
	}
	eventually(t, func() error {
		if n := store.count("Watch"); n < 3 {
			return fmt.Errorf("%d watch attempts", n)
		}
		return nil
	})

	// Another host wrote a filter meanwhile.
	store.put(nodePath(1), storedFilter(t, 1, "app/", arr("empty"), epoch.Add(time.Hour)))
	store.setDown(false)
	eventually(t, func() error {
		if !sv.accepts(t, 0, "app/x") {
			return fmt.Errorf("filter 1 not applied after the store came back")
		}
		return nil
	})

	// Down again: filter 1 goes and filter 2 comes while this host hears nothing.
	store.setDown(true)
	store.del(nodePath(1))
	store.put(nodePath(2), storedFilter(t, 2, "db/", arr("empty"), epoch.Add(time.Hour)))
	if !sv.accepts(t, 0, "app/x") {
		t.Error("filter 1 dropped while the store was down")
	}
	store.setDown(false)
	eventually(t, func() error {
		list := sv.listed(t)
		if _, ok := list[1]; ok {
			return fmt.Errorf("filter 1 still listed after the resync")
		}
		if _, ok := list[2]; !ok {
			return fmt.Errorf("filter 2 not listed after the resync")
		}
		return nil
	})
	if sv.accepts(t, 0, "app/x") || !sv.accepts(t, 0, "db/x") {
		t.Error("the resynced filters do not act as stored")
	}
}

// TestClusterWatchBroken: a watch that breaks (a compaction, a restart) is re-established
// and resynced.
func TestClusterWatchBroken(t *testing.T) {
	store := newMemStore()
	sv := serveLogging(t, store, nil)
	eventually(t, func() error {
		if store.watching() != 1 {
			return fmt.Errorf("no watch yet")
		}
		return nil
	})
	store.breakWatches()
	store.put(nodePath(3), storedFilter(t, 3, "app/", arr("empty"), epoch.Add(time.Hour)))
	eventually(t, func() error {
		if !sv.accepts(t, 0, "app/x") {
			return fmt.Errorf("filter 3 not applied after the watch broke")
		}
		return nil
	})
	if n := store.count("Watch"); n < 2 {
		t.Errorf("%d watches, want a second one", n)
	}
}

// TestFiltersCluster covers the registry's cluster operations: syncCluster replaces the
// cluster filters only, putCluster replaces in place or moves a filter to its new
// logger, and neither touches a local filter with the same id.
func TestFiltersCluster(t *testing.T) {
	fs, _ := newTestFilters(t, arr("severity", uint64(3)))
	local := fs.Add("app/", mustParse(t, arr("empty")), time.Hour, DispositionLocal)
	cl := func(id uint64, logger string) FilterInfo {
		return FilterInfo{Logger: logger, Filter: mustParse(t, arr("empty")), ID: id, Disposition: DispositionCluster,
			Deadline: epoch.Add(time.Hour)}
	}
	ids := func() map[uint64]string {
		out := map[uint64]string{}
		for _, fi := range fs.List() {
			if fi.Logger != DefaultLogger {
				out[fi.ID] = fmt.Sprintf("%s/%d", fi.Logger, fi.Disposition)
			}
		}
		return out
	}
	fs.syncCluster([]FilterInfo{cl(1, "a"), cl(2, "b"), cl(local, "x")})
	if got, want := ids(), map[uint64]string{local: "app//0", 1: "a/1", 2: "b/1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after sync: %v, want %v", got, want)
	}
	fs.syncCluster([]FilterInfo{cl(2, "b"), cl(3, "c")})
	if got, want := ids(), map[uint64]string{local: "app//0", 2: "b/1", 3: "c/1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after a second sync: %v, want %v", got, want)
	}
	if !fs.putCluster(cl(2, "moved")) || fs.putCluster(cl(local, "x")) {
		t.Error("putCluster: want true for a cluster id, false for a local one")
	}
	if got, want := ids(), map[uint64]string{local: "app//0", 2: "moved/1", 3: "c/1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after put: %v, want %v", got, want)
	}
	if fs.removeCluster(local) || !fs.removeCluster(3) || fs.removeCluster(3) {
		t.Error("removeCluster: want false for a local id, true then false for a cluster one")
	}
	if got, want := ids(), map[uint64]string{local: "app//0", 2: "moved/1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after remove: %v, want %v", got, want)
	}
}

// TestConfigUnicornPath checks the folder's validation.
func TestConfigUnicornPath(t *testing.T) {
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"", true}, {DefaultUnicornPath, true}, {"/a", true},
		{"/", false}, {"a/b", false}, {"/a/", false}, {"/a//b", false}, {"/a/./b", false}, {"/a/..", false},
		{"/a\x00b", false}, {"/" + strings.Repeat("a", 4096), false},
	} {
		cfg := DefaultConfig()
		cfg.UnicornPath = tc.path
		if err := cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("unicorn_path %q: Validate = %v, want ok %v", tc.path, err, tc.ok)
		}
	}
}
