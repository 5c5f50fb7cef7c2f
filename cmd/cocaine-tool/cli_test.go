package main

import (
	"net"
	"os"
	"os/exec"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestParseArgs(t *testing.T) {
	opts := []option{
		{short: "n", long: "name", arg: "NAME"},
		{short: "m", long: "expand-manifest"},
		{short: "p", long: "expand-profile"},
		{long: "filter_def", arg: "JSON"},
		{short: "t", long: "tag", arg: "TAG", multi: true},
		{short: "v", long: "verbose", multi: true},
	}
	for _, tc := range []struct {
		name string
		in   []string
		vals values
		pos  []string
		err  string
	}{
		{"short with value", []string{"-n", "echo"}, values{"name": {"echo"}}, nil, ""},
		{"short glued", []string{"-necho"}, values{"name": {"echo"}}, nil, ""},
		{"long", []string{"--name", "echo"}, values{"name": {"echo"}}, nil, ""},
		{"long equals", []string{"--name=echo"}, values{"name": {"echo"}}, nil, ""},
		{"flags combined", []string{"-mp"}, values{"expand-manifest": {"true"}, "expand-profile": {"true"}}, nil, ""},
		{"flags then value", []string{"-mnecho"}, values{"expand-manifest": {"true"}, "name": {"echo"}}, nil, ""},
		{"count", []string{"-vvv"}, values{"verbose": {"true", "true", "true"}}, nil, ""},
		{"underscore and dash", []string{"--filter-def", "[1]"}, values{"filter_def": {"[1]"}}, nil, ""},
		{"underscore", []string{"--filter_def", "[1]"}, values{"filter_def": {"[1]"}}, nil, ""},
		{"interspersed", []string{"a", "-n", "x", "b"}, values{"name": {"x"}}, []string{"a", "b"}, ""},
		{"negative number", []string{"/x", "-1"}, values{}, []string{"/x", "-1"}, ""},
		{"dash dash", []string{"/x", "--", "sh", "-c", "true"}, values{}, []string{"/x", "sh", "-c", "true"}, ""},
		{"repeated", []string{"-t", "a", "--tag", "b"}, values{"tag": {"a", "b"}}, nil, ""},
		{"same twice", []string{"-n", "a", "-n", "a"}, values{"name": {"a", "a"}}, nil, ""},
		{"twice", []string{"-n", "a", "-n", "b"}, nil, nil, `-n/--name given twice ("a" and "b")`},
		{"unknown long", []string{"--nmae", "x"}, nil, nil, "unknown option --nmae (did you mean --name?)"},
		{"unknown short", []string{"-x"}, nil, nil, "unknown option -x"},
		{"missing value", []string{"-n"}, nil, nil, "-n/--name needs a value (NAME)"},
		{"flag with value", []string{"--expand-manifest=1"}, nil, nil, "-m/--expand-manifest takes no value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals, pos, _, err := parseArgs(opts, tc.in, false)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(vals, tc.vals) || !reflect.DeepEqual(pos, tc.pos) {
				t.Errorf("got %v %v, want %v %v", vals, pos, tc.vals, tc.pos)
			}
		})
	}
}

// TestHelp checks that every command has help with its usage and an example, on stdout
// with exit 0, however it is asked for.
func TestHelp(t *testing.T) {
	e := func(args ...string) result { return toolWith(t, runOpts{noHost: true}, args...) }
	for _, g := range allGroups() {
		for _, c := range g.commands {
			words := strings.Fields(c.name)
			for _, args := range [][]string{append(words, "--help"), append(words, "-h"), append([]string{"help"}, words...)} {
				r := e(args...)
				if r.code != 0 || !strings.Contains(r.out, "usage: cocaine-tool "+c.name) || !strings.Contains(r.out, "\nexample:\n  ") {
					t.Errorf("%v: exit %d, stdout:\n%s\nstderr: %s", args, r.code, r.out, r.err)
				}
			}
		}
		if !g.single() {
			r := e(g.name, "--help")
			if r.code != 0 || !strings.Contains(r.out, "commands:") {
				t.Errorf("%s --help: exit %d\n%s", g.name, r.code, r.out)
			}
			if r := e(g.name); g.def == nil && (r.code != exitBadArgs || !strings.Contains(r.err, "commands:")) {
				t.Errorf("%s alone: exit %d, want 22 and the group's help on stderr", g.name, r.code)
			}
		}
	}
	if r := e("--help"); r.code != 0 || !strings.Contains(r.out, "groups:") || !strings.Contains(r.out, "unicorn") {
		t.Errorf("--help: exit %d\n%s", r.code, r.out)
	}
	if r := e(); r.code != exitBadArgs || !strings.Contains(r.err, "usage:") {
		t.Errorf("no arguments: exit %d, want 22 with the usage on stderr", r.code)
	}
	if r := e("version"); r.code != 0 || strings.TrimSpace(r.out) != version {
		t.Errorf("version: %d %q", r.code, r.out)
	}
}

// TestBadArguments: every mistake in a command line exits 22 with one line saying what
// is wrong (and the usage), before anything is sent.
func TestBadArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"nosuch"}, `unknown command "nosuch"`},
		{[]string{"app", "nosuch"}, `unknown command "nosuch" in app`},
		{[]string{"app", "list", "--nosuch"}, "unknown option --nosuch"},
		{[]string{"app", "list", "extra"}, "wrong number of arguments"},
		{[]string{"app", "view"}, "-n/--name is required"},
		{[]string{"app", "start", "-n", "echo"}, "-r/--profile is required"},
		{[]string{"app", "upload", "/nonexistent/dir"}, "no such file or directory"},
		{[]string{"app", "upload", "-n", "x", "--package", "p.tar.gz", "dir"}, "mutually exclusive"},
		{[]string{"app", "upload", "--docker_address", "unix:///var/run/docker.sock"}, "not supported"},
		{[]string{"profile", "upload", "-n", "p"}, "-r/--profile is required"},
		{[]string{"profile", "upload", "-n", "p", "-r", "{nope"}, "neither JSON nor a file"},
		{[]string{"profile", "upload", "-n", "p", "-r", "[1]"}, "must be a JSON object"},
		{[]string{"profile", "upload", "-n", "p", "-r", `{"pool-limit": 0}`}, "pool-limit must be greater than 0"},
		{[]string{"profile", "copy", "-n", "a", "--copyname", "a"}, "unable to copy an instance to itself"},
		{[]string{"group", "create", "-n", "g", "-c", "{}"}, "must not be empty"},
		{[]string{"group", "create", "-n", "g", "-c", `{"a": 0}`}, "non-zero total weight"},
		{[]string{"group", "create", "-n", "g", "-c", `{"a": -1}`}, "non-negative integer"},
		{[]string{"group", "create", "-n", "g", "-c", `{"a": 1.5}`}, "non-negative integer"},
		{[]string{"group", "push", "-n", "g", "--app", "a", "-w", "x"}, "not an integer"},
		{[]string{"runlist", "upload", "-n", "r", "--runlist", `{"app": 1}`}, "must be a string"},
		{[]string{"crashlog", "list", "-n", "a", "-d", "31-02"}, "not a date"},
		{[]string{"crashlog", "list", "-n", "a", "-d", "soon"}, "want today, yesterday"},
		{[]string{"unicorn", "put", "/x"}, "wrong number of arguments"},
		{[]string{"unicorn", "put", "/x", "{", "0"}, "is not JSON"},
		{[]string{"unicorn", "put", "/x", "1", "v"}, `version "v" is not an integer`},
		{[]string{"unicorn", "watch", "/x", "-c", "-2"}, "not a non-negative integer"},
		{[]string{"storage", "write", "c", "k"}, "give the value as JSON or with --file"},
		{[]string{"storage", "write", "c", "k", "1", "--raw"}, "--raw goes with --file"},
		{[]string{"logging", "set_filter", "-n", "x", "--filter_def", "{", "--ttl", "1"}, "not parsable"},
		{[]string{"logging", "set_filter", "-n", "x", "--filter_def", "[]", "--ttl", "1"}, "at least one element"},
		{[]string{"logging", "set_filter", "-n", "x", "--filter_def", `["empty"]`, "--ttl", "x"}, "TTL should be a number"},
		{[]string{"logs", "remove", "-i", "x"}, "is not a number"},
		{[]string{"completion", "zsh"}, "only bash"},
		{[]string{"app", "list", "--port", "0"}, "is not a port number"},
		{[]string{"app", "list", "--port", "http"}, "is not a port number"},
		{[]string{"app", "list", "--timeout", "soon"}, "neither seconds nor a duration"},
		{[]string{"app", "list", "-o", "yaml"}, "want json or table"},
		{[]string{"call"}, "wrong number of arguments"},
	} {
		r := toolWith(t, runOpts{noHost: true}, tc.args...)
		first, _, _ := strings.Cut(r.err, "\n")
		if r.code != exitBadArgs || !strings.HasPrefix(first, "cocaine-tool: ") || !strings.Contains(first, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 22 and %q", tc.args, r.code, r.err, tc.want)
		}
	}
	if r := toolWith(t, runOpts{noHost: true, env: map[string]string{"COCAINE_LOCATOR": "host:port"}}, "app", "list"); r.code != exitBadArgs || !strings.Contains(r.err, "COCAINE_LOCATOR") {
		t.Errorf("bad COCAINE_LOCATOR: exit %d %q", r.code, r.err)
	}
}

// TestUnreachable: no locator there is a service error (128) that names the endpoint.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	r := toolWith(t, runOpts{noHost: true, env: map[string]string{"COCAINE_LOCATOR": addr}}, "app", "list", "--timeout", "5")
	if r.code != exitService || !strings.Contains(r.err, "no locator at "+addr) {
		t.Errorf("exit %d, stderr %q", r.code, r.err)
	}
	_, port, _ := net.SplitHostPort(addr)
	r = toolWith(t, runOpts{noHost: true}, "--host", "127.0.0.1", "--port", port, "info")
	if r.code != exitService || !strings.Contains(r.err, "no locator at "+addr) {
		t.Errorf("--host/--port: exit %d, stderr %q", r.code, r.err)
	}
}

// TestCompletion sources the generated script in bash and completes a few command lines.
func TestCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	r := toolWith(t, runOpts{noHost: true}, "completion", "bash")
	if r.code != 0 {
		t.Fatalf("completion bash: %d %s", r.code, r.err)
	}
	script := t.TempDir() + "/completion.bash"
	if err := os.WriteFile(script, []byte(r.out), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line string // the words; the last is being completed
		want []string
	}{
		{"cocaine-tool ap", []string{"app"}},
		{"cocaine-tool app up", []string{"upload"}},
		{"cocaine-tool app upload --man", []string{"--manifest", "--manifest-only"}},
		{"cocaine-tool --host 10.0.0.1 unicorn w", []string{"watch"}},
		{"cocaine-tool -o t", []string{"table"}},
		{"cocaine-tool logs set_", []string{"set_cluster_filter", "set_filter"}},
		{"cocaine-tool cluster --res", []string{"--resolve"}},
		{"cocaine-tool completion b", []string{"bash"}},
	} {
		words := strings.Fields(tc.line)
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = "'" + w + "'"
		}
		cmd := exec.Command(bash, "-c", `source "$1"; COMP_WORDS=(`+strings.Join(quoted, " ")+`); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _cocaine_tool; printf '%s\n' "${COMPREPLY[@]}"`, "bash", script)
		cmd.Env = append(os.Environ(), "PATH=/nonexistent") // no cocaine-tool to ask for names
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", tc.line, err, out)
		}
		got := strings.Fields(string(out))
		sort.Strings(got)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q completes to %v, want %v", tc.line, got, tc.want)
		}
	}
}

func TestDayTag(t *testing.T) {
	now := time.Date(2016, 12, 6, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]string{
		"": "", "today": "cocaine-2016-12-06", "t": "cocaine-2016-12-06", "yesterday": "cocaine-2016-12-05",
		"y": "cocaine-2016-12-05", "5": "cocaine-2016-12-05", "05-11": "cocaine-2016-11-05", "05-12-2015": "cocaine-2015-12-05",
	} {
		got, err := dayTag(in, now)
		if err != nil || got != want {
			t.Errorf("dayTag(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"32", "1-13", "x", "1-2-3-4", "29-02-2015"} {
		if _, err := dayTag(bad, now); err == nil {
			t.Errorf("dayTag(%q) accepted", bad)
		}
	}
}

func TestRingShares(t *testing.T) {
	// Each point owns the arc since the previous one (the first, since the last one
	// wrapped around): a gets 2^30+1 and 2^30-1, b 2^31.
	ring := []any{[]any{uint64(1 << 30), "a"}, []any{uint64(3 << 30), "b"}, []any{uint64(4<<30 - 1), "a"}}
	got, err := ringShares(ring)
	if err != nil {
		t.Fatal(err)
	}
	if got["a"] != 0.5 || got["b"] != 0.5 {
		t.Errorf("shares %v, want a 0.5 b 0.5", got)
	}
	if _, err := ringShares([]any{"x"}); err == nil {
		t.Error("a malformed ring was accepted")
	}
}

func TestTable(t *testing.T) {
	var b strings.Builder
	tableOf(map[string]any{"a": map[string]any{"x": 1, "yy": "long value"}, "bbb": map[string]any{"x": nil}}).write(&b)
	want := "NAME  X  YY\na     1  long value\nbbb   -  -\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	tableOf([]any{"x", "y"}, "APP").write(&b)
	if b.String() != "APP\nx\ny\n" {
		t.Errorf("list table: %q", b.String())
	}
}
