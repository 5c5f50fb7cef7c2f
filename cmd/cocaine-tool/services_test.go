package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestStorage: write, read (as JSON and raw), find, remove, and the errors.
func TestStorage(t *testing.T) {
	ok(t, "storage", "write", "tst-settings", "answer", `{"value": 42, "list": [1, "x"]}`, "-t", "config", "-t", "b")
	var v map[string]any
	okJSON(t, &v, "storage", "read", "tst-settings", "answer")
	if !reflect.DeepEqual(v, map[string]any{"value": 42.0, "list": []any{1.0, "x"}}) {
		t.Errorf("read %v", v)
	}
	raw := filepath.Join(t.TempDir(), "raw")
	os.WriteFile(raw, []byte("\x00\x01 not msgpack"), 0o644)
	ok(t, "storage", "write", "tst-settings", "blob", "--file", raw, "--raw", "-t", "b")
	if out := ok(t, "storage", "read", "tst-settings", "blob", "--raw"); out != "\x00\x01 not msgpack" {
		t.Errorf("raw read %q", out)
	}
	fails(t, exitService, "is not msgpack", "storage", "read", "tst-settings", "blob")
	r := toolWith(t, runOpts{stdin: `"from stdin"`}, "storage", "write", "tst-settings", "stdin", "--file", "-")
	if r.code != 0 {
		t.Fatalf("write from stdin: %d %s", r.code, r.err)
	}
	var s string
	okJSON(t, &s, "storage", "read", "tst-settings", "stdin")
	if s != "from stdin" {
		t.Errorf("stdin value %q", s)
	}
	var keys []string
	okJSON(t, &keys, "storage", "find", "tst-settings", "b")
	if !reflect.DeepEqual(keys, []string{"answer", "blob"}) {
		t.Errorf("find b: %v", keys)
	}
	okJSON(t, &keys, "storage", "find", "tst-settings", "b", "-t", "config")
	if !reflect.DeepEqual(keys, []string{"answer"}) {
		t.Errorf("find b config: %v", keys)
	}
	if out := ok(t, "storage", "find", "tst-settings", "b", "-o", "table"); out != "KEY\nanswer\nblob\n" {
		t.Errorf("find as a table: %q", out)
	}
	if out := ok(t, "storage", "remove", "tst-settings", "answer"); out != "" {
		t.Errorf("remove printed %q (the original prints nothing)", out)
	}
	var done map[string]any
	okJSON(t, &done, "storage", "remove", "tst-settings", "answer", "-o", "json")
	if done["removed"] != "tst-settings/answer" {
		t.Errorf("remove -o json: %v", done)
	}
	fails(t, exitService, "error [12, 2] generic.ENOENT:", "storage", "read", "tst-settings", "answer")
	fails(t, exitService, "error [12, 22] generic.EINVAL:", "storage", "write", "tst-settings", "bad\x00key", "1")
}

// TestUnicorn: every unicorn command, and its errors with category 11.
func TestUnicorn(t *testing.T) {
	u := uniq("/tst/u")
	var done bool
	okJSON(t, &done, "unicorn", "create", u+"/a", `{"x": 1}`)
	if !done {
		t.Error("create said false")
	}
	var got []any
	okJSON(t, &got, "unicorn", "get", u+"/a")
	if !reflect.DeepEqual(got, []any{map[string]any{"x": 1.0}, 0.0}) {
		t.Errorf("get: %v", got)
	}
	okJSON(t, &got, "unicorn", "put", u+"/a", `"two"`, "0")
	if got[0] != true {
		t.Errorf("put with the right version: %v", got)
	}
	okJSON(t, &got, "unicorn", "put", u+"/a", `"three"`, "0")
	if got[0] != false || !reflect.DeepEqual(got[1], []any{"two", 1.0}) {
		t.Errorf("put with a stale version: %v", got)
	}
	okJSON(t, &got, "unicorn", "children", u)
	if !reflect.DeepEqual(got[1], []any{"a"}) {
		t.Errorf("children: %v", got)
	}
	fails(t, exitService, "error [11, 9] unicorn.node_exists:", "unicorn", "create", u+"/a", "1")
	fails(t, exitService, "error [11, 7] unicorn.version_not_allowed:", "unicorn", "del", u+"/a", "7")
	fails(t, exitService, "error [11, 6] unicorn.invalid_path:", "unicorn", "get", "no-slash")
	okJSON(t, &done, "unicorn", "del", u+"/a")
	okJSON(t, &got, "unicorn", "get", u+"/a")
	if !reflect.DeepEqual(got, []any{nil, -1.0}) {
		t.Errorf("get after del: %v", got)
	}
	ok(t, "unicorn", "create", u+"/b", "1")
	okJSON(t, &done, "unicorn", "remove", u+"/b", "0") // the alias, with a version
}

// TestUnicornWatch: the sync line, then the events; -c ends it; FROM_REVISION replays.
func TestUnicornWatch(t *testing.T) {
	w := uniq("/tst/w")
	ok(t, "unicorn", "create", w+"/a", "1")
	var wg sync.WaitGroup
	var r result
	wg.Go(func() { r = ct(t, "unicorn", "watch", w, "-c", "2") })
	// The watch is on once its sync line is out; writes until then may land before it.
	// So write until it ends: it has then seen two events after its start.
	stop := make(chan struct{})
	var writer sync.WaitGroup
	writer.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			ct(t, "unicorn", "put", w+"/a", fmt.Sprint(i+2), "-1") // -1: a mismatch is fine too
			ct(t, "unicorn", "create", fmt.Sprintf("%s/n%d", w, i), "0")
		}
	})
	wg.Wait()
	close(stop)
	writer.Wait()
	if r.code != 0 {
		t.Fatalf("watch: %d %s", r.code, r.err)
	}
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if len(lines) != 3 {
		t.Fatalf("watch -c 2 printed %d lines:\n%s", len(lines), r.out)
	}
	var sync0 []any
	json.Unmarshal([]byte(lines[0]), &sync0)
	if len(sync0) != 5 || sync0[1] != "sync" || sync0[2] != w {
		t.Fatalf("first line %s, want the sync line", lines[0])
	}
	start := sync0[0].(float64)
	var prev float64 = start
	for _, l := range lines[1:] {
		var ev []any
		if err := json.Unmarshal([]byte(l), &ev); err != nil || len(ev) != 5 {
			t.Fatalf("event %q: %v", l, err)
		}
		if rev := ev[0].(float64); rev <= prev {
			t.Errorf("revisions not increasing: %s after %v", l, prev)
		} else {
			prev = rev
		}
		if !strings.HasPrefix(ev[2].(string), w+"/") {
			t.Errorf("event outside /tst/w: %s", l)
		}
	}
	// Replay from the sync revision: the same first event comes back.
	r2 := ct(t, "unicorn", "watch", w, fmt.Sprint(int64(start)), "-c", "1")
	if r2.code != 0 {
		t.Fatalf("watch from %v: %d %s", start, r2.code, r2.err)
	}
	if l := strings.Split(strings.TrimSpace(r2.out), "\n"); len(l) != 2 || l[1] != lines[1] {
		t.Errorf("replay from %v:\n%s\nwant second line %s", start, r2.out, lines[1])
	}
	// An interrupted watch ends with 0.
	ctx, cancel := context.WithCancel(t.Context())
	var r3 result
	var w3 sync.WaitGroup
	out := newWrites()
	w3.Go(func() { r3 = toolWith(t, runOpts{ctx: ctx, stdout: out}, "unicorn", "watch", w) })
	if line := <-out; !strings.Contains(line, `"sync"`) {
		t.Errorf("first line %q", line)
	}
	cancel()
	w3.Wait()
	if r3.code != 0 {
		t.Errorf("interrupted watch: exit %d %s", r3.code, r3.err)
	}
}

// TestUnicornLock: the command runs under the lock with its exit status; a second
// locker waits its turn.
func TestUnicornLock(t *testing.T) {
	l := uniq("/tst/locks")
	r := ct(t, "unicorn", "lock", l+"/a", "--", "sh", "-c", "echo held; exit 3")
	if r.code != 3 || r.out != "held\n" {
		t.Fatalf("lock -- sh: exit %d, stdout %q, stderr %q", r.code, r.out, r.err)
	}
	dir := t.TempDir()
	release, second := filepath.Join(dir, "release"), filepath.Join(dir, "second")
	var wg sync.WaitGroup
	var r1, r2 result
	wg.Go(func() {
		r1 = ct(t, "unicorn", "lock", l+"/b", "--", "sh", "-c", `while [ ! -e "$1" ]; do sleep 0.02; done`, "sh", release)
	})
	eventually(t, "the first lock taken", func() error { return lockers(t, l+"/b", 1) })
	wg.Go(func() { r2 = ct(t, "unicorn", "lock", l+"/b", "--", "touch", second) })
	eventually(t, "the second locker queued", func() error { return lockers(t, l+"/b", 2) })
	if _, err := os.Stat(second); err == nil {
		t.Fatal("the second locker ran while the first held the lock")
	}
	// A third one gives up after --timeout, with the reason.
	fails(t, exitService, "timed out after 300ms (raise it with --timeout)", "unicorn", "lock", l+"/b", "--timeout", "0.3", "--", "touch", second)
	os.WriteFile(release, nil, 0o644)
	wg.Wait()
	if r1.code != 0 || r2.code != 0 {
		t.Fatalf("lockers: %d %s / %d %s", r1.code, r1.err, r2.code, r2.err)
	}
	if _, err := os.Stat(second); err != nil {
		t.Fatal("the second locker did not run")
	}
	eventually(t, "the locks released", func() error { return lockers(t, l+"/b", 0) })
	// No command: held until interrupted.
	ctx, cancel := context.WithCancel(t.Context())
	var r3 result
	out := newWrites()
	wg.Go(func() { r3 = toolWith(t, runOpts{ctx: ctx, stdout: out}, "unicorn", "lock", l+"/c") })
	if line := <-out; !strings.Contains(line, `"locked": "`+l+`/c"`) {
		t.Errorf("lock without a command printed %q", line)
	}
	if err := lockers(t, l+"/c", 1); err != nil {
		t.Error(err)
	}
	cancel()
	wg.Wait()
	if r3.code != 0 {
		t.Errorf("lock without a command: %d %q", r3.code, r3.err)
	}
	eventually(t, "the lock released", func() error { return lockers(t, l+"/c", 0) })
	fails(t, exitService, "error [11, 6]", "unicorn", "lock", "bad path", "--", "true")
}

// lockers checks how many lock nodes are under path.
func lockers(t *testing.T, path string, n int) error {
	r := ct(t, "unicorn", "children", path)
	if r.code != 0 {
		if n == 0 && strings.Contains(r.err, "[11, 8]") {
			return nil
		}
		return fmt.Errorf("children: %s", r.err)
	}
	var got []any
	json.Unmarshal([]byte(r.out), &got)
	if names, _ := got[1].([]any); len(names) != n {
		return fmt.Errorf("%d lock nodes under %s, want %d", len(names), path, n)
	}
	return nil
}

// TestUnicornEdit: $EDITOR edits a node's value; create if absent, put otherwise.
func TestUnicornEdit(t *testing.T) {
	x := uniq("/tst/edit")
	editor := func(value string) map[string]string {
		script := filepath.Join(t.TempDir(), "editor")
		os.WriteFile(script, []byte("#!/bin/sh\nprintf '%s' '"+value+"' > \"$1\"\n"), 0o755)
		return map[string]string{"EDITOR": script}
	}
	if r := toolWith(t, runOpts{env: editor(`{"a": 1}`)}, "unicorn", "edit", x); r.code != 0 {
		t.Fatalf("edit (create): %d %s", r.code, r.err)
	}
	var got []any
	okJSON(t, &got, "unicorn", "get", x)
	if !reflect.DeepEqual(got, []any{map[string]any{"a": 1.0}, 0.0}) {
		t.Errorf("after create: %v", got)
	}
	if r := toolWith(t, runOpts{env: editor(`[2]`)}, "unicorn", "edit", x); r.code != 0 {
		t.Fatalf("edit (put): %d %s", r.code, r.err)
	}
	okJSON(t, &got, "unicorn", "get", x)
	if !reflect.DeepEqual(got, []any{[]any{2.0}, 1.0}) {
		t.Errorf("after put: %v", got)
	}
	r := toolWith(t, runOpts{env: editor(`{not json`)}, "unicorn", "edit", x)
	if r.code != exitBadArgs || !strings.Contains(r.err, "is kept in") {
		t.Errorf("edit to bad JSON: %d %s", r.code, r.err)
	}
}

// TestLogging: filters set, listed and removed, on this host and cluster-wide.
func TestLogging(t *testing.T) {
	var id, cid json.Number // ids are 64-bit
	okJSON(t, &id, "logging", "set_filter", "-n", "tst/local", "--filter_def", `["severity", 2]`, "--ttl", "600")
	okJSON(t, &cid, "logs", "set", "-n", "tst/cluster", "--filter-def", `["e", "trace"]`, "--ttl", "600", "--cluster")
	var cid2 json.Number
	okJSON(t, &cid2, "logging", "set_cluster_filter", "-n", "tst/cluster2", "--filter_def", `["severity", 3]`, "--ttl", "60")
	var list map[string][]map[string]any
	eventually(t, "both filters listed", func() error {
		r := ct(t, "logging", "list_filters")
		list = nil
		d := json.NewDecoder(strings.NewReader(r.out))
		d.UseNumber()
		if err := d.Decode(&list); err != nil {
			return fmt.Errorf("%v: %s %s", err, r.out, r.err)
		}
		if len(list["tst/local"]) != 1 || len(list["tst/cluster"]) != 1 || len(list["tst/cluster2"]) != 1 {
			return fmt.Errorf("filters: %v", list)
		}
		return nil
	})
	l, c := list["tst/local"][0], list["tst/cluster"][0]
	if l["id"] != id || l["disposition"] != "local" || !reflect.DeepEqual(l["filter_definition"], []any{"severity", json.Number("2")}) {
		t.Errorf("local filter %v (id %v)", l, id)
	}
	if c["id"] != cid || c["disposition"] != "clusterwide" {
		t.Errorf("cluster filter %v (id %v)", c, cid)
	}
	if _, err := time.Parse("2006-01-02 15:04:05", l["deadline"].(string)); err != nil {
		t.Errorf("deadline %v: %v", l["deadline"], err)
	}
	if out := ok(t, "logs", "list", "-o", "table"); !strings.HasPrefix(out, "ID  ") || !strings.Contains(out, "tst/local") {
		t.Errorf("filters as a table:\n%s", out)
	}
	var removed bool
	okJSON(t, &removed, "logging", "remove_filter", "-i", id.String())
	if !removed {
		t.Error("remove_filter of a filter that exists said false")
	}
	okJSON(t, &removed, "logs", "remove", cid.String())
	okJSON(t, &removed, "logging", "remove-filter", "--filter_id", cid2.String())
	if !removed {
		t.Error("remove of a cluster filter said false")
	}
	okJSON(t, &removed, "logging", "remove_filter", "-i", id.String())
	if removed {
		t.Error("remove_filter of a removed filter said true")
	}
	var loggers map[string]any
	okJSON(t, &loggers, "logging", "list_loggers")
	if _, ok := loggers["loggers"].([]any); !ok {
		t.Errorf("list_loggers: %v", loggers)
	}
	fails(t, exitService, "error [12, 22]", "logging", "set_filter", "-n", "x", "--filter_def", `["nosuch"]`, "--ttl", "1")
}

// uniq makes a name of its own for a test's run, so that runs (-count) do not collide
// on the shared daemon.
func uniq(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}
