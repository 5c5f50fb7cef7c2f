package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestCall: any method of any service by name, with the graph from the locator.
func TestCall(t *testing.T) {
	var api map[string]any
	okJSON(t, &api, "call", "storage")
	methods, _ := api["methods"].(map[string]any)
	if read, _ := methods["read"].(map[string]any); read["reply"] != "value" || read["stream_in"] != false {
		t.Errorf("call storage (the methods): %v", api)
	}
	out := ok(t, "call", "node", "-o", "table")
	found := false
	for _, l := range strings.Split(out, "\n") {
		found = found || reflect.DeepEqual(strings.Fields(l), []string{"5", "enqueue", "true", "stream"})
	}
	if !strings.HasPrefix(out, "ID  METHOD  ") || !found {
		t.Errorf("node's methods as a table:\n%s", out)
	}
	ok(t, "storage", "write", "tst-call", "k", `"v"`, "-t", "t1")
	var keys []string
	okJSON(t, &keys, "call", "storage", "find", "tst-call", `["t1"]`)
	if !reflect.DeepEqual(keys, []string{"k"}) {
		t.Errorf("call storage find: %v", keys)
	}
	var got []any
	okJSON(t, &got, "call", "unicorn", "get", "/tst/call/none")
	if !reflect.DeepEqual(got, []any{nil, -1.0}) {
		t.Errorf("call unicorn get: %v", got)
	}
	if out := ok(t, "call", "logging", "emit", "1", "tst/call", "hello"); out != "" {
		t.Errorf("a mute method printed %q", out)
	}
	var resolved []any
	okJSON(t, &resolved, "call", "locator", "resolve", "storage")
	if len(resolved) != 3 {
		t.Errorf("call locator resolve: %v", resolved)
	}
	fails(t, exitBadArgs, `storage has no method "nosuch"`, "call", "storage", "nosuch")
	fails(t, exitBadArgs, "takes no stream", "call", "storage", "find", "x", "-w", "chunk")
	fails(t, exitService, "error [10, 1] locator.service_not_available", "call", "tst-nosuch", "x")
	fails(t, exitService, "error [12, 2] generic.ENOENT", "call", "storage", "read", "tst-call", "nosuch")
}

// TestLocatorCommands: locate (resolve), uuid, the original's cluster listing, routing.
func TestLocatorCommands(t *testing.T) {
	var loc struct {
		Endpoints []string
		Version   int
		API       map[string]string
	}
	okJSON(t, &loc, "locate", "-n", "storage")
	if len(loc.Endpoints) == 0 || loc.Version != 1 || loc.API["0"] != "read" || loc.API["3"] != "find" {
		t.Errorf("locate storage: %+v", loc)
	}
	okJSON(t, &loc, "resolve", "unicorn")
	if loc.API["3"] != "get" {
		t.Errorf("resolve unicorn: %+v", loc)
	}
	fails(t, exitService, "error [10, 1] locator.service_not_available", "locate", "-n", "tst-nosuch")
	var id string
	okJSON(t, &id, "uuid")
	if id != shared.d.UUID() {
		t.Errorf("uuid %q, want %q", id, shared.d.UUID())
	}
	var hosts map[string]any
	okJSON(t, &hosts, "cluster")
	if len(hosts) != 0 {
		t.Errorf("a single host lists other hosts: %v", hosts)
	}
	okJSON(t, &hosts, "cluster", "--resolve", "1")
	var routes map[string]any
	okJSON(t, &routes, "routing")
}

// TestClusterCommands: members, status, remove of a stranger, a backup.
func TestClusterCommands(t *testing.T) {
	var members []map[string]any
	okJSON(t, &members, "cluster", "members")
	if len(members) != 1 || members[0]["leader"] != true {
		t.Errorf("members: %v", members)
	}
	var status map[string]any
	okJSON(t, &status, "cluster", "status")
	if status["id"] != shared.d.UUID() {
		t.Errorf("status: %v", status)
	}
	if out := ok(t, "cluster", "members", "-o", "table"); !strings.HasPrefix(out, "ADDRESS") {
		t.Errorf("members as a table:\n%s", out)
	}
	fails(t, exitService, "error [21759, 2] cluster.not_member", "cluster", "remove", "tst-nosuch")
	file := filepath.Join(t.TempDir(), "backup.snap")
	var saved map[string]any
	okJSON(t, &saved, "cluster", "snapshot", "save", file)
	if st, err := os.Stat(file); err != nil || saved["bytes"] != float64(st.Size()) || st.Size() == 0 {
		t.Errorf("snapshot save: %v, %v %v", saved, st, err)
	}
	fails(t, exitBadArgs, "no such file", "cluster", "snapshot", "restore", filepath.Join(t.TempDir(), "nosuch"))
	fails(t, exitBadArgs, "cluster snapshot save FILE", "cluster", "snapshot", "load", file)
}
