package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The examples of examples/, each uploaded, started, called and paused through the tool,
// as examples/README.md shows them.

func startExample(t *testing.T, name string) {
	t.Helper()
	dir := appDir(t, binary(t, "../../examples/"+name), nil)
	ok(t, "app", "upload", dir) // the name is the directory's
	ok(t, "profile", "upload", "-n", "example", "-r", `{"pool-limit": 2}`)
	ok(t, "app", "start", "-n", name, "-r", "example")
	t.Cleanup(func() {
		ct(t, "app", "pause", "-n", name)
		ct(t, "app", "remove", "-n", name)
	})
}

func TestExampleEcho(t *testing.T) {
	startExample(t, "echo")
	if out := ok(t, "call", "echo", "enqueue", "ping", "-w", "hello", "--raw"); out != "hello" {
		t.Errorf("ping: %q", out)
	}
	// echo streams every chunk back as it comes: one JSON line each.
	if out := ok(t, "call", "echo", "enqueue", "echo", "-w", "a", "-w", "b"); out != "\"a\"\n\"b\"\n" {
		t.Errorf("echo: %q", out)
	}
	r := toolWith(t, runOpts{stdin: "from stdin"}, "call", "echo", "enqueue", "ping", "--stdin", "--raw")
	if r.code != 0 || r.out != "from stdin" {
		t.Errorf("ping --stdin: %d %q %s", r.code, r.out, r.err)
	}
	fails(t, exitService, "error [42, 1] worker.event_not_found", "call", "echo", "enqueue", "nosuch")
	ok(t, "app", "pause", "-n", "echo")
	eventually(t, "echo unpublished", func() error {
		if r := ct(t, "call", "echo", "enqueue", "ping"); r.code != exitService || !strings.Contains(r.err, "error [10, 1] locator.service_not_available") {
			return fmt.Errorf("exit %d: %s", r.code, r.err)
		}
		return nil
	})
}

func TestExampleStream(t *testing.T) {
	startExample(t, "stream")
	if out := ok(t, "call", "stream", "enqueue", "count", "-w", "5", "--raw"); out != "1\n2\n3\n4\n5\n" {
		t.Errorf("count 5: %q", out)
	}
	// Words cut between chunks are kept whole; each word is one chunk, one line.
	out := ok(t, "call", "stream", "enqueue", "words", "-w", "to be or n", "-w", "ot to be")
	var words []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var w string
		if err := json.Unmarshal([]byte(l), &w); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		words = append(words, w)
	}
	if want := []string{"to", "be", "or", "not", "to", "be"}; !reflect.DeepEqual(words, want) {
		t.Errorf("words: %v, want %v", words, want)
	}
	// Each chunk arrives as its own line, before the stream ends.
	lines := newWrites()
	if r := toolWith(t, runOpts{stdout: lines}, "call", "stream", "enqueue", "count", "-w", "3"); r.code != 0 {
		t.Fatalf("count 3: %d %s", r.code, r.err)
	}
	for _, want := range []string{"\"1\\n\"\n", "\"2\\n\"\n", "\"3\\n\"\n"} {
		if got := <-lines; got != want {
			t.Errorf("line %q, want %q", got, want)
		}
	}
	fails(t, exitService, "error [42, 400] worker.400: count wants a number", "call", "stream", "enqueue", "count", "-w", "x")
	ok(t, "app", "pause", "-n", "stream")
}

func TestExampleKV(t *testing.T) {
	startExample(t, "kv")
	for i, kv := range []string{"answer=42", "question=unknown", "answer=forty-two"} {
		if out := ok(t, "call", "kv", "enqueue", "put", "-w", kv, "--raw"); out != string(rune('1'+i)) {
			t.Errorf("put %s answered %q, want the count %d", kv, out, i+1)
		}
	}
	if out := ok(t, "call", "kv", "enqueue", "get", "-w", "answer", "--raw"); out != "forty-two" {
		t.Errorf("get: %q", out)
	}
	var keys []string
	if err := json.Unmarshal([]byte(ok(t, "call", "kv", "enqueue", "keys", "--raw")), &keys); err != nil || !slices.Contains(keys, "answer") || !slices.Contains(keys, "question") {
		t.Errorf("keys: %v %v", keys, err)
	}
	if out := ok(t, "call", "kv", "enqueue", "writes", "--raw"); out != "3" {
		t.Errorf("writes: %q", out)
	}
	// The worker wrote through the same services the tool reads.
	if out := ok(t, "storage", "read", "kv", "answer", "--raw"); out != "forty-two" {
		t.Errorf("storage read: %q", out)
	}
	var counter []any
	okJSON(t, &counter, "unicorn", "get", "/kv/kv/writes")
	if counter[0] != 3.0 {
		t.Errorf("unicorn counter: %v", counter)
	}
	fails(t, exitService, "error [42, 404]", "call", "kv", "enqueue", "get", "-w", "nosuch")
	fails(t, exitService, "error [42, 400]", "call", "kv", "enqueue", "put", "-w", "no equals sign")
	ok(t, "app", "pause", "-n", "kv")
	for _, k := range keys {
		ok(t, "storage", "remove", "kv", k)
	}
	ok(t, "unicorn", "del", "/kv/kv/writes")
}

// TestExamplesReadme: every example has its section in examples/README.md.
func TestExamplesReadme(t *testing.T) {
	b, err := os.ReadFile("../../examples/README.md")
	if err != nil {
		t.Fatal(err)
	}
	dirs, _ := filepath.Glob("../../examples/*/main.go")
	for _, d := range dirs {
		name := filepath.Base(filepath.Dir(d))
		if !strings.Contains(string(b), "## "+name) {
			t.Errorf("examples/README.md has no section for %s", name)
		}
	}
}
