package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cocaine/cocaine/rpc"
)

// echoBinary is the echo example, built once.
func echoBinary(t *testing.T) string { return binary(t, "../../examples/echo") }

// archiveNames lists the entries of the archive stored in apps/<app>.
func archiveNames(t *testing.T, app string) []string {
	t.Helper()
	raw := ok(t, "storage", "read", "apps", app, "--raw")
	v, err := rpc.Unmarshal([]byte(raw))
	if err != nil {
		t.Fatalf("apps/%s is not msgpack: %v", app, err)
	}
	s, isRaw := v.(string)
	if !isRaw {
		t.Fatalf("apps/%s is a %T, want a msgpack raw holding the archive", app, v)
	}
	zr, err := gzip.NewReader(strings.NewReader(s))
	if err != nil {
		t.Fatalf("apps/%s is not a .tar.gz: %v", app, err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	return names
}

// TestAppLifecycle uploads a directory, starts, checks, inspects, calls, restarts,
// pauses and removes the app, with the errors on the way.
func TestAppLifecycle(t *testing.T) {
	dir := appDir(t, echoBinary(t), map[string]string{"data/readme.txt": "hello"})
	if out := ok(t, "app", "upload", dir, "-n", "tst-echo"); out != "" {
		t.Errorf("upload printed %q (the original prints nothing)", out)
	}
	var apps []string
	okJSON(t, &apps, "app", "list")
	if !slices.Contains(apps, "tst-echo") {
		t.Fatalf("app list %v", apps)
	}
	var manifest map[string]any
	okJSON(t, &manifest, "app", "view", "-n", "tst-echo")
	if !reflect.DeepEqual(manifest, map[string]any{"slave": "echo"}) {
		t.Errorf("manifest %v", manifest)
	}
	names := archiveNames(t, "tst-echo")
	for _, want := range []string{"echo", "manifest.json", "data/", "data/readme.txt"} {
		if !slices.Contains(names, want) {
			t.Errorf("archive %v lacks %s", names, want)
		}
	}
	ok(t, "profile", "upload", "-n", "tst-p", "-r", `{"pool-limit": 2}`)
	if out := ok(t, "app", "start", "-n", "tst-echo", "-r", "tst-p"); out != "Application `tst-echo` has been started with profile `tst-p`\n" {
		t.Errorf("start printed %q", out)
	}
	fails(t, exitService, "error [20991, 5] node.already_started:", "app", "start", "-n", "tst-echo", "-r", "tst-p")
	var check map[string]any
	okJSON(t, &check, "app", "check", "tst-echo")
	if check["state"] != "running" {
		t.Errorf("check %v", check)
	}
	if out := ok(t, "call", "tst-echo", "enqueue", "ping", "-w", "hi", "-w", " there", "--raw"); out != "hi there" {
		t.Errorf("ping answered %q", out)
	}
	var info struct{ Apps map[string]any }
	okJSON(t, &info, "info", "-n", "tst-e*", "-p")
	app, _ := info.Apps["tst-echo"].(map[string]any)
	if app == nil || app["state"] != "running" || profileName(app) != "tst-p" {
		t.Fatalf("info: %v", info.Apps)
	}
	if p := app["profile"].(map[string]any); !reflect.DeepEqual(p["data"], map[string]any{"pool-limit": 2.0}) {
		t.Errorf("info -p: profile %v", p)
	}
	okJSON(t, &info, "info", "-n", "tst-nosuch", "-w")
	if s, _ := info.Apps["tst-nosuch"].(string); !strings.Contains(s, "[12, 22]") {
		t.Errorf("info of an unknown app: %v", info.Apps)
	}
	okJSON(t, &info, "info", "-n", "tst-echo", "-w", "-m")
	if a := info.Apps["tst-echo"].(map[string]any); !reflect.DeepEqual(a["manifest"], map[string]any{"slave": "echo"}) {
		t.Errorf("info -m: %v", a["manifest"])
	}
	okJSON(t, &info, "i", "-b", "-n", "tst-echo", "-w")
	if a := info.Apps["tst-echo"].(map[string]any); a["state"] != "running" || a["pool"] != nil {
		t.Errorf("info -b: %v", a)
	}
	if out := ok(t, "info", "-o", "table"); !strings.HasPrefix(out, "APP ") || !strings.Contains(out, "tst-echo  running") {
		t.Errorf("info table:\n%s", out)
	}
	if out := ok(t, "app", "restart", "-n", "tst-echo"); out != "Application `tst-echo` has been restarted with profile `tst-p`\n" {
		t.Errorf("restart printed %q", out)
	}
	var res map[string]any
	okJSON(t, &res, "app", "pause", "-n", "tst-echo", "-o", "json")
	if !reflect.DeepEqual(res, map[string]any{"app": "tst-echo", "status": "stopped"}) {
		t.Errorf("pause -o json: %v", res)
	}
	fails(t, exitService, "error [20991, 6] node.not_running: app is not running: app 'tst-echo' is not running", "app", "stop", "-n", "tst-echo")
	fails(t, exitService, "is stopped", "app", "check", "-n", "tst-echo")
	fails(t, exitService, "not running and no profile was given", "app", "restart", "-n", "tst-echo")
	if out := ok(t, "app", "restart", "-n", "tst-echo", "-r", "tst-p"); !strings.Contains(out, "restarted") {
		t.Errorf("restart -r of a stopped app: %q", out)
	}
	ok(t, "app", "pause", "tst-echo")

	fails(t, exitService, "error [12, 2] generic.ENOENT:", "app", "start", "-n", "tst-nosuch", "-r", "tst-p")
	fails(t, exitService, "error [12, 2] generic.ENOENT:", "app", "start", "-n", "tst-echo", "-r", "tst-nosuch")
	fails(t, exitService, "error [12, 2] generic.ENOENT:", "app", "view", "-n", "tst-nosuch")
	fails(t, exitService, "error [12, 2] generic.ENOENT:", "app", "check", "-n", "tst-nosuch")
	ok(t, "app", "remove", "-n", "tst-echo")
	okJSON(t, &apps, "app", "list")
	if slices.Contains(apps, "tst-echo") {
		t.Errorf("removed app still listed: %v", apps)
	}
	fails(t, exitService, `error [12, 2] generic.ENOENT: application "tst-echo" does not exist`, "app", "remove", "-n", "tst-echo")
	fails(t, exitService, "error [12, 2]", "storage", "read", "apps", "tst-echo", "--raw")
}

// TestAppUploadForms: --package, an inline --manifest, --manifest-only, the JSON
// result, and the checks made before anything is sent.
func TestAppUploadForms(t *testing.T) {
	bin := echoBinary(t)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	b, _ := os.ReadFile(bin)
	tw.WriteHeader(&tar.Header{Name: "bin/echo", Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg})
	tw.Write(b)
	tw.Close()
	zw.Close()
	pkg := filepath.Join(t.TempDir(), "echo.tar.gz")
	os.WriteFile(pkg, buf.Bytes(), 0o644)

	var res map[string]any
	okJSON(t, &res, "app", "upload", "-n", "tst-pkg", "--package", pkg, "--manifest", `{"slave": "bin/echo", "environment": {"A": "1"}}`, "-o", "json")
	if res["app"] != "tst-pkg" || res["archive_bytes"] != float64(buf.Len()) {
		t.Errorf("upload -o json: %v", res)
	}
	if names := archiveNames(t, "tst-pkg"); !reflect.DeepEqual(names, []string{"bin/echo"}) {
		t.Errorf("--package stored %v", names)
	}
	ok(t, "profile", "upload", "-n", "tst-pkg", "-r", "{}")
	ok(t, "app", "start", "-n", "tst-pkg", "-r", "tst-pkg")
	if out := ok(t, "call", "tst-pkg", "enqueue", "ping", "-w", "pkg", "--raw"); out != "pkg" {
		t.Errorf("ping %q", out)
	}
	ok(t, "app", "pause", "-n", "tst-pkg")

	mf := filepath.Join(t.TempDir(), "m.json")
	os.WriteFile(mf, []byte(`{"slave": "bin/echo", "environment": {"B": "2"}}`), 0o644)
	ok(t, "app", "upload", "-n", "tst-pkg", "--manifest-only", "--manifest", mf)
	var manifest map[string]any
	okJSON(t, &manifest, "app", "view", "-n", "tst-pkg")
	if manifest["environment"].(map[string]any)["B"] != "2" {
		t.Errorf("--manifest-only: %v", manifest)
	}
	if names := archiveNames(t, "tst-pkg"); len(names) != 1 {
		t.Errorf("--manifest-only changed the archive: %v", names)
	}
	ok(t, "app", "remove", "-n", "tst-pkg")

	noSlave := appDir(t, bin, nil)
	writeFile(t, filepath.Join(noSlave, "manifest.json"), `{"environment": {"A": 1}}`)
	e := fails(t, exitBadArgs, "runnable object has not been specified", "app", "upload", noSlave)
	if !strings.Contains(e, `environment "A" must be a string`) {
		t.Errorf("not every manifest problem reported: %s", e)
	}
	missing := appDir(t, bin, nil)
	writeFile(t, filepath.Join(missing, "manifest.json"), `{"slave": "nosuch"}`)
	fails(t, exitBadArgs, `slave "nosuch" is not in the app's archive`, "app", "upload", missing)
	fails(t, exitBadArgs, `slave "nosuch" is not in the app's archive`, "app", "upload", "-n", "x", "--package", pkg, "--manifest", `{"slave": "nosuch"}`)
	notTar := filepath.Join(t.TempDir(), "x.tar.gz")
	os.WriteFile(notTar, []byte("not an archive"), 0o644)
	fails(t, exitBadArgs, "not a tar archive", "app", "upload", "-n", "x", "--package", notTar, "--manifest", `{"slave": "x"}`)
	fails(t, exitBadArgs, "no manifest.json", "app", "upload", t.TempDir())
	fails(t, exitBadArgs, "invalid app name", "app", "upload", missing, "-n", "a/b")
	fails(t, exitBadArgs, "--manifest is required", "app", "upload", "-n", "x", "--package", pkg)
	// A manifest found below the top, as the original finds it.
	nested := appDir(t, bin, map[string]string{"conf/manifest.json": `{"slave": "echo"}`})
	os.Remove(filepath.Join(nested, "manifest.json"))
	ok(t, "app", "upload", nested, "-n", "tst-nested")
	ok(t, "app", "remove", "-n", "tst-nested")
}

// TestAppLargeUpload: an app over 1 MiB goes through the blob store, draws a progress
// bar on a terminal (and none elsewhere), and runs.
func TestAppLargeUpload(t *testing.T) {
	big := make([]byte, 3<<20)
	rand.Read(big) // incompressible
	dir := appDir(t, echoBinary(t), map[string]string{"big.bin": string(big)})
	r := toolWith(t, runOpts{tty: true}, "app", "upload", dir, "-n", "tst-big")
	if r.code != 0 {
		t.Fatalf("upload: %d %s", r.code, r.err)
	}
	if !strings.Contains(r.err, "\ruploading tst-big [") || !strings.Contains(r.err, "100%") || !strings.HasSuffix(r.err, "\n") {
		t.Errorf("no progress bar on a terminal: %q", r.err)
	}
	r = toolWith(t, runOpts{}, "app", "upload", dir, "-n", "tst-big")
	if r.code != 0 || r.err != "" {
		t.Errorf("upload without a terminal: %d, stderr %q (want nothing)", r.code, r.err)
	}
	// Over the node's frame limit (8 MiB in these tests): the node drops the connection,
	// and the tool says why that may be.
	huge := make([]byte, 9<<20)
	rand.Read(huge)
	hugeDir := appDir(t, echoBinary(t), map[string]string{"huge.bin": string(huge)})
	fails(t, exitService, "over its rpc.max_frame_size", "app", "upload", hugeDir, "-n", "tst-huge")
	ok(t, "profile", "upload", "-n", "tst-big", "-r", "{}")
	ok(t, "app", "start", "-n", "tst-big", "-r", "tst-big")
	if out := ok(t, "call", "tst-big", "enqueue", "ping", "-w", "big", "--raw"); out != "big" {
		t.Errorf("ping %q", out)
	}
	ok(t, "app", "pause", "-n", "tst-big")
	ok(t, "app", "remove", "-n", "tst-big")
}

// TestEntities: profiles, runlists and routing groups: every command and the errors.
func TestEntities(t *testing.T) {
	f := filepath.Join(t.TempDir(), "p.json")
	os.WriteFile(f, []byte(`{"pool-limit": 3, "isolate": {"type": "process", "args": {"class": "batch"}}}`), 0o644)
	ok(t, "profile", "upload", "-n", "tst-prof", "--profile", f)
	var p map[string]any
	okJSON(t, &p, "profile", "view", "tst-prof")
	if p["pool-limit"] != 3.0 {
		t.Errorf("profile view %v", p)
	}
	ok(t, "profile", "copy", "-n", "tst-prof", "--copyname", "tst-prof2")
	ok(t, "profile", "rename", "-n", "tst-prof2", "-c", "tst-prof3")
	var names []string
	okJSON(t, &names, "profile", "list")
	if !slices.Contains(names, "tst-prof") || !slices.Contains(names, "tst-prof3") || slices.Contains(names, "tst-prof2") {
		t.Errorf("profile list %v", names)
	}
	editor := filepath.Join(t.TempDir(), "editor")
	os.WriteFile(editor, []byte("#!/bin/sh\nsed -i 's/\"pool-limit\": 3/\"pool-limit\": 5/' \"$1\"\n"), 0o755)
	if r := toolWith(t, runOpts{env: map[string]string{"EDITOR": editor}}, "profile", "edit", "-n", "tst-prof3"); r.code != 0 {
		t.Fatalf("profile edit: %d %s", r.code, r.err)
	}
	okJSON(t, &p, "profile", "view", "tst-prof3")
	if p["pool-limit"] != 5.0 {
		t.Errorf("after edit: %v", p)
	}
	bad := filepath.Join(t.TempDir(), "bad-editor")
	os.WriteFile(bad, []byte("#!/bin/sh\nsed -i 's/\"pool-limit\": 5/\"pool-limit\": -1/' \"$1\"\n"), 0o755)
	r := toolWith(t, runOpts{env: map[string]string{"EDITOR": bad}}, "profile", "edit", "-n", "tst-prof3")
	if r.code != exitBadArgs || !strings.Contains(r.err, "pool-limit") {
		t.Errorf("edit to an invalid profile: %d %s", r.code, r.err)
	}
	ok(t, "profile", "remove", "-n", "tst-prof3")
	r = ct(t, "profile", "remove", "-n", "tst-prof3")
	if r.code != 0 || !strings.Contains(r.err, "did not exist") {
		t.Errorf("removing a missing profile: %d %q (want 0 and a warning, as the original)", r.code, r.err)
	}
	fails(t, exitService, "error [12, 2] generic.ENOENT:", "profile", "view", "-n", "tst-prof3")
	fails(t, exitService, "error [12, 2] generic.ENOENT:", "profile", "copy", "-n", "tst-prof3", "--copyname", "x")

	ok(t, "runlist", "create", "-n", "tst-rl")
	var add map[string]any
	okJSON(t, &add, "runlist", "add-app", "-n", "tst-rl", "--app", "a1", "--profile", "p1")
	if !reflect.DeepEqual(add, map[string]any{"runlist": "tst-rl", "status": "modified", "added": map[string]any{"app": "a1", "profile": "p1"}}) {
		t.Errorf("add-app %v", add)
	}
	okJSON(t, &add, "runlist", "add-app", "-n", "tst-rl2", "--app", "a2", "--profile", "p2", "-f")
	if add["status"] != "created" {
		t.Errorf("add-app -f %v", add)
	}
	fails(t, exitService, "error [12, 2]", "runlist", "add-app", "-n", "tst-rl3", "--app", "a", "--profile", "p")
	var rl map[string]any
	okJSON(t, &rl, "runlist", "view", "-n", "tst-rl")
	if !reflect.DeepEqual(rl, map[string]any{"a1": "p1"}) {
		t.Errorf("runlist view %v", rl)
	}
	if out := ok(t, "runlist", "view", "-n", "tst-rl", "-o", "table"); out != "APP  PROFILE\na1   p1\n" {
		t.Errorf("runlist table %q", out)
	}
	var rm map[string]any
	okJSON(t, &rm, "runlist", "remove-app", "-n", "tst-rl", "--app", "nosuch")
	if rm["status"] != "the application named nosuch is not in runlist" {
		t.Errorf("remove-app of an absent app: %v", rm)
	}
	okJSON(t, &rm, "runlist", "remove-app", "-n", "tst-rl", "--app", "a1")
	if rm["status"] != "successfully removed" {
		t.Errorf("remove-app: %v", rm)
	}
	fails(t, exitService, `runlist "tst-rl3" is missing`, "runlist", "remove-app", "-n", "tst-rl3", "--app", "a")
	ok(t, "runlist", "upload", "-n", "tst-rl", "--runlist", `{"x": "y"}`)
	sedEditor := func(expr string) map[string]string {
		p := filepath.Join(t.TempDir(), "editor")
		os.WriteFile(p, []byte("#!/bin/sh\nsed -i '"+expr+"' \"$1\"\n"), 0o755)
		return map[string]string{"EDITOR": p}
	}
	if r := toolWith(t, runOpts{env: sedEditor(`s/"y"/"z"/`)}, "runlist", "edit", "-n", "tst-rl"); r.code != 0 {
		t.Fatalf("runlist edit: %d %s", r.code, r.err)
	}
	okJSON(t, &rl, "runlist", "view", "-n", "tst-rl")
	if !reflect.DeepEqual(rl, map[string]any{"x": "z"}) {
		t.Errorf("runlist after edit: %v", rl)
	}
	if r := toolWith(t, runOpts{env: sedEditor(`s/x/x/`)}, "runlist", "edit", "-n", "tst-rl"); r.code != 0 || !strings.Contains(r.err, "nothing changed") {
		t.Errorf("an edit that changes nothing: %d %s", r.code, r.err)
	}
	ok(t, "runlist", "copy", "-n", "tst-rl", "-c", "tst-rl4")
	ok(t, "runlist", "rename", "-n", "tst-rl4", "-c", "tst-rl5")
	okJSON(t, &names, "runlist", "list")
	if !slices.Contains(names, "tst-rl5") || slices.Contains(names, "tst-rl4") {
		t.Errorf("runlist list %v", names)
	}
	for _, n := range []string{"tst-rl", "tst-rl2", "tst-rl5"} {
		ok(t, "runlist", "remove", "-n", n)
	}

	ok(t, "group", "create", "-n", "tst-g", "-c", `{"tst-a": 1, "tst-b": 3}`)
	ok(t, "group", "push", "-n", "tst-g", "--app", "tst-c", "-w", "4")
	ok(t, "group", "pop", "-n", "tst-g", "--app", "tst-a")
	var g map[string]any
	okJSON(t, &g, "group", "view", "-n", "tst-g")
	if !reflect.DeepEqual(g, map[string]any{"tst-b": 3.0, "tst-c": 4.0}) {
		t.Errorf("group view %v", g)
	}
	if r := toolWith(t, runOpts{env: sedEditor(`s/"tst-c": 4/"tst-c": 1/`)}, "group", "edit", "-n", "tst-g"); r.code != 0 {
		t.Fatalf("group edit: %d %s", r.code, r.err)
	}
	okJSON(t, &g, "group", "view", "-n", "tst-g")
	if !reflect.DeepEqual(g, map[string]any{"tst-b": 3.0, "tst-c": 1.0}) {
		t.Errorf("group after edit: %v", g)
	}
	if r := toolWith(t, runOpts{env: sedEditor(`s/: 1/: -1/`)}, "group", "edit", "-n", "tst-g"); r.code != exitBadArgs || !strings.Contains(r.err, "non-negative integer") {
		t.Errorf("an edit to a bad weight: %d %s", r.code, r.err)
	}
	ok(t, "group", "push", "-n", "tst-g", "--app", "tst-c", "-w", "4")
	ok(t, "group", "refresh", "-n", "tst-g")
	ok(t, "group", "refresh")
	var routes map[string]map[string]float64
	okJSON(t, &routes, "routing", "-n", "tst-g")
	if s := routes["tst-g"]; len(s) != 2 || s["tst-b"] < 0.3 || s["tst-b"] > 0.55 || s["tst-b"]+s["tst-c"] < 0.999 {
		t.Errorf("routing: %v (weights 3 and 4)", routes)
	}
	ok(t, "group", "copy", "-n", "tst-g", "-c", "tst-g2")
	ok(t, "group", "rename", "-n", "tst-g2", "-c", "tst-g3")
	okJSON(t, &names, "group", "list")
	if !slices.Contains(names, "tst-g") || !slices.Contains(names, "tst-g3") || slices.Contains(names, "tst-g2") {
		t.Errorf("group list %v", names)
	}
	ok(t, "group", "pop", "-n", "tst-g3", "--app", "tst-b")
	fails(t, exitBadArgs, "must not be empty", "group", "pop", "-n", "tst-g3", "--app", "tst-c") // as the original
	ok(t, "group", "remove", "-n", "tst-g3")
	ok(t, "group", "remove", "-n", "tst-g")
	fails(t, exitService, "error [12, 2]", "group", "view", "-n", "tst-g")
	fails(t, exitService, "error [12, 2]", "group", "push", "-n", "tst-g", "--app", "a", "-w", "1")
	ok(t, "group", "refresh", "-n", "tst-g") // a removed group leaves the routing
	fails(t, exitService, `no such group "tst-g"`, "routing", "-n", "tst-g")
}

// TestCrashlog: a worker that dies leaves crash logs, which the crashlog commands list,
// show and remove.
func TestCrashlog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "crash")
	writeFile(t, filepath.Join(dir, "manifest.json"), `{"slave": "crash.sh"}`)
	writeFile(t, filepath.Join(dir, "crash.sh"), "#!/bin/sh\necho about to crash\necho really\nexit 3\n")
	os.Chmod(filepath.Join(dir, "crash.sh"), 0o755)
	ok(t, "app", "upload", dir, "-n", "tst-crash")
	ok(t, "profile", "upload", "-n", "tst-crash", "-r", `{"request-timeout": 5}`)
	ok(t, "app", "start", "-n", "tst-crash", "-r", "tst-crash")
	t.Cleanup(func() { ct(t, "app", "pause", "-n", "tst-crash") })
	// The request makes the node spawn a worker, which dies; its answer does not matter.
	ct(t, "call", "tst-crash", "enqueue", "x", "-w", "y", "--timeout", "2")
	var logs []map[string]any
	eventually(t, "a crash log", func() error {
		r := ct(t, "crashlog", "list", "-n", "tst-crash", "-o", "json")
		logs = nil
		json.Unmarshal([]byte(r.out), &logs)
		if len(logs) == 0 {
			return fmt.Errorf("none yet: %d %s %s", r.code, r.out, r.err)
		}
		return nil
	})
	first := logs[0]
	ts := first["timestamp"].(string)
	if first["key"] != ts+":"+first["uuid"].(string) {
		t.Errorf("crash log %v", first)
	}
	out := ok(t, "crashlog", "list", "-n", "tst-crash")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != len(logs) || !strings.Contains(lines[0], ts) || !strings.Contains(lines[0], first["uuid"].(string)) {
		t.Errorf("list as the original prints it:\n%s", out)
	}
	var today []map[string]any
	okJSON(t, &today, "crashlog", "list", "-n", "tst-crash", "-d", "today", "-o", "json")
	if len(today) == 0 {
		t.Errorf("no crash log today (UTC)")
	}
	view := ok(t, "crashlog", "view", "-n", "tst-crash", "-t", ts)
	if !strings.HasPrefix(view, "about to crash\nreally\n") || !strings.Contains(view, "cocaine: worker "+first["uuid"].(string)+" ended") {
		t.Errorf("crashlog view:\n%s", view)
	}
	if out := ok(t, "crashlog", "view", "-n", "tst-crash"); !strings.HasPrefix(out, "about to crash\n") {
		t.Errorf("latest crash log:\n%s", out)
	}
	status := ok(t, "crashlog", "status")
	if !strings.Contains(status, "tst-crash") {
		t.Errorf("status:\n%s", status)
	}
	ok(t, "crashlog", "remove", "-n", "tst-crash", "-t", ts)
	fails(t, exitService, "error [12, 2]", "crashlog", "view", "-n", "tst-crash", "-t", ts)
	fails(t, exitService, "error [12, 2]", "crashlog", "remove", "-n", "tst-crash", "-t", ts)
	ok(t, "app", "pause", "-n", "tst-crash") // no more crashes
	ok(t, "crashlog", "removeall", "-n", "tst-crash")
	okJSON(t, &logs, "crashlog", "list", "-n", "tst-crash", "-o", "json")
	if len(logs) != 0 {
		t.Errorf("after removeall: %v", logs)
	}
	fails(t, exitService, `error [12, 2] generic.ENOENT: app "tst-crash" has no crash logs`, "crashlog", "view", "-n", "tst-crash")
	ok(t, "app", "remove", "-n", "tst-crash")
}
