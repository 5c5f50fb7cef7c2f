package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// editJSON lets a person edit v as JSON in $EDITOR (VISUAL first, vi if neither is
// set) and returns the result, and whether it changed. The file is removed afterwards,
// unless its content is not JSON: then it is kept and named in the error, so nothing
// typed is lost.
func editJSON(e *env, name string, v any) (any, bool, error) {
	var before bytes.Buffer
	if err := writeJSON(&before, v); err != nil {
		return nil, false, err
	}
	dir, err := os.MkdirTemp("", "cocaine-tool-edit-")
	if err != nil {
		return nil, false, err
	}
	path := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(name)+".json")
	if err := os.WriteFile(path, before.Bytes(), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, false, err
	}
	keep := false
	defer func() {
		if !keep {
			os.RemoveAll(dir)
		}
	}()
	editor := e.getenv("VISUAL")
	if editor == "" {
		editor = e.getenv("EDITOR")
	}
	if editor == "" {
		editor = "vi"
	}
	// The editor may carry arguments ("code --wait"): the shell splits it, as git does.
	cmd := exec.CommandContext(e.ctx, "/bin/sh", "-c", editor+` "$1"`, "sh", path)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = e.stdin, e.stdout, e.stderr
	if err := cmd.Run(); err != nil {
		return nil, false, toolErrorf("editor %q: %v", editor, err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		return nil, false, err
	}
	if bytes.Equal(bytes.TrimSpace(after), bytes.TrimSpace(before.Bytes())) {
		fmt.Fprintln(e.stderr, "cocaine-tool: nothing changed")
		return v, false, nil
	}
	out, err := parseJSONBytes(after)
	if err != nil {
		keep = true
		return nil, false, badf("the edited text is not JSON (%v); it is kept in %s", err, path)
	}
	return out, true, nil
}

// parseJSON reads a value given on the command line; integers stay integers.
func parseJSON(s string) (any, error) {
	v, err := parseJSONBytes([]byte(s))
	if err != nil {
		return nil, badf("value %q is not JSON: %v", s, err)
	}
	return v, nil
}

// parseJSONBytes decodes one JSON value, integers as int64 (msgpack integers, not
// doubles, as the original's Python json did).
func parseJSONBytes(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("more than one JSON value")
	}
	return numbers(v), nil
}

func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if u, err := x.Float64(); err == nil {
			return u
		}
		return x.String()
	case []any:
		for i := range x {
			x[i] = numbers(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = numbers(x[k])
		}
	}
	return v
}
