package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Output. The default (no -o) is the original cocaine-tool's: JSON sorted and indented by
// four, or the original's text where it printed text (app start, crashlog list), or
// nothing where it printed nothing. "-o json" prints JSON for every command, "-o table"
// aligned columns for people.

// show prints a result that the original printed as JSON. tbl, if not nil, is its table
// form; otherwise the table is derived from v.
func (x *inv) show(v any, tbl *table) error {
	if x.t.output == "table" {
		if tbl == nil {
			tbl = tableOf(v)
		}
		return tbl.write(x.stdout())
	}
	return writeJSON(x.stdout(), v)
}

// done prints the result of a command the original printed nothing for: nothing by
// default, v with -o json or -o table.
func (x *inv) done(v any) error {
	if x.t.output == "" {
		return nil
	}
	return x.show(v, nil)
}

// text prints a result that the original printed as text lines: the lines by default, v
// with -o json, tbl (or v's table) with -o table.
func (x *inv) text(lines []string, v any, tbl *table) error {
	if x.t.output != "" {
		return x.show(v, tbl)
	}
	for _, l := range lines {
		if _, err := fmt.Fprintln(x.stdout(), l); err != nil {
			return err
		}
	}
	return nil
}

// writeJSON prints v as the original did (json.dumps(v, sort_keys=True, indent=4)).
func writeJSON(w io.Writer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "    ")
	if err := enc.Encode(jsonable(v)); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// compactJSON is v on one line (streams: one line per message).
func compactJSON(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(jsonable(v)); err != nil {
		return fmt.Sprintf("%q", fmt.Sprint(v))
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

// jsonable turns a decoded msgpack value into one encoding/json takes: raw strings that
// are not UTF-8 become {"base64": ...}, maps with non-string keys get their keys printed,
// NaN and infinities become strings.
func jsonable(v any) any {
	switch x := v.(type) {
	case string:
		if !utf8.ValidString(x) {
			return map[string]string{"base64": base64.StdEncoding.EncodeToString([]byte(x))}
		}
		return x
	case []byte:
		return jsonable(string(x))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return strconv.FormatFloat(x, 'g', -1, 64)
		}
		return x
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonable(e)
		}
		return out
	case []string:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonable(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonable(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = jsonable(e)
		}
		return out
	}
	return v
}

// table is rows of cells under a header, printed aligned.
type table struct {
	header []string
	rows   [][]string
}

func (t *table) add(cells ...any) {
	row := make([]string, len(cells))
	for i, c := range cells {
		row[i] = cell(c)
	}
	t.rows = append(t.rows, row)
}

func (t *table) write(w io.Writer) error {
	widths := make([]int, len(t.header))
	for i, h := range t.header {
		widths[i] = utf8.RuneCountInString(h)
	}
	for _, r := range t.rows {
		for i, c := range r {
			if i < len(widths) {
				widths[i] = max(widths[i], utf8.RuneCountInString(c))
			}
		}
	}
	var buf bytes.Buffer
	line := func(cells []string) {
		for i, c := range cells {
			if i == len(cells)-1 {
				buf.WriteString(c)
				break
			}
			buf.WriteString(c)
			buf.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
		}
		buf.WriteString("\n")
	}
	if len(t.header) > 0 {
		line(t.header)
	}
	for _, r := range t.rows {
		line(r)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// cell renders one value for a table: scalars as they are, the rest as compact JSON.
func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return "-"
		}
		if !utf8.ValidString(x) {
			return compactJSON(x)
		}
		return x
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return compactJSON(v)
}

func isScalar(v any) bool {
	switch v.(type) {
	case []any, []string, map[string]any, map[any]any:
		return false
	}
	return true
}

// tableOf derives a table from a JSON-like value: a list of scalars is one column, a map
// of scalars KEY and VALUE, a map or a list of maps one row per entry with a column per
// field, a list of lists one column per position.
func tableOf(v any, header ...string) *table {
	v = jsonable(v)
	t := &table{}
	hdr := func(def ...string) []string {
		if len(header) > 0 {
			return header
		}
		return def
	}
	switch x := v.(type) {
	case []any:
		if len(x) == 0 {
			t.header = hdr("VALUE")
			return t
		}
		switch x[0].(type) {
		case map[string]any:
			cols := fieldUnion(x)
			t.header = hdr(upper(cols)...)
			for _, e := range x {
				m, _ := e.(map[string]any)
				row := make([]any, len(cols))
				for i, c := range cols {
					row[i] = m[c]
				}
				t.add(row...)
			}
		case []any:
			width := 0
			for _, e := range x {
				if l, ok := e.([]any); ok {
					width = max(width, len(l))
				}
			}
			def := make([]string, width)
			for i := range def {
				def[i] = strconv.Itoa(i)
			}
			t.header = hdr(def...)
			for _, e := range x {
				l, _ := e.([]any)
				t.add(l...)
			}
		default:
			t.header = hdr("VALUE")
			for _, e := range x {
				t.add(e)
			}
		}
	case map[string]any:
		keys := sortedKeys(x)
		nested := false
		for _, k := range keys {
			if _, ok := x[k].(map[string]any); ok {
				nested = true
			}
		}
		if !nested {
			t.header = hdr("KEY", "VALUE")
			for _, k := range keys {
				t.add(k, x[k])
			}
			return t
		}
		var rows []any
		for _, k := range keys {
			rows = append(rows, x[k])
		}
		cols := fieldUnion(rows)
		t.header = hdr(append([]string{"NAME"}, upper(cols)...)...)
		for _, k := range keys {
			row := []any{k}
			m, ok := x[k].(map[string]any)
			if !ok { // not a map among maps: the value itself, in the first column
				m = map[string]any{}
				if len(cols) > 0 {
					m[cols[0]] = x[k]
				}
			}
			for _, c := range cols {
				row = append(row, m[c])
			}
			t.add(row...)
		}
	default:
		t.header = hdr("VALUE")
		t.add(v)
	}
	return t
}

// fieldUnion lists the fields of a list of maps, sorted.
func fieldUnion(rows []any) []string {
	seen := map[string]bool{}
	for _, r := range rows {
		if m, ok := r.(map[string]any); ok {
			for k := range m {
				seen[k] = true
			}
		}
	}
	return sortedKeys(seen)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func upper(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToUpper(s)
	}
	return out
}

// progress draws a bar on a terminal while sent() goes from 0 to total.
type progress struct {
	w     io.Writer
	label string
	total int64
	sent  func() int64
	stop  chan struct{}
	wg    sync.WaitGroup
	done  bool // set by finish, after the drawing goroutine has stopped
}

// startProgress starts drawing, every 100 ms, until finish.
func startProgress(w io.Writer, label string, total int64, sent func() int64) *progress {
	p := &progress{w: w, label: label, total: total, sent: sent, stop: make(chan struct{})}
	p.wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			p.draw()
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	})
	return p
}

func (p *progress) draw() {
	n := min(max(p.sent(), 0), p.total)
	const width = 30
	frac := float64(n) / float64(max(p.total, 1))
	full := int(frac * width)
	bar := strings.Repeat("=", full)
	if full < width {
		bar += ">" + strings.Repeat(" ", width-full-1)
	}
	state := "            " // as wide as the other state, to cover it
	if !p.done && n >= p.total {
		state = ", storing..."
	}
	fmt.Fprintf(p.w, "\r%s [%s] %3.0f%% %s/%s%s", p.label, bar, frac*100, size(n), size(p.total), state)
}

// finish draws the last state and ends the line.
func (p *progress) finish() {
	close(p.stop)
	p.wg.Wait()
	p.done = true
	p.draw()
	fmt.Fprintln(p.w)
}

// size renders a byte count for people.
func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
