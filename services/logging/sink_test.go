package logging

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// sample is a record with every field set and one attribute of each value type.
func sample() *Record {
	return &Record{
		ID:       17,
		Time:     time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 3*3600)),
		Severity: SeverityWarning,
		Backend:  "app/echo",
		Message:  "request done",
		Attrs: []Attr{
			{"user", "bob"},
			{"latency", 1.5},
			{"count", uint64(math.MaxUint64)},
			{"delta", int64(-3)},
			{"ok", true},
			{"none", nil},
			{"quote me", "two words"},
			{"html", "<b>&</b>"},
		},
		Verbose:  true,
		TraceID:  0xab,
		SpanID:   0x1234567890abcdef,
		ParentID: 1,
	}
}

func TestTextSinkLine(t *testing.T) {
	var buf bytes.Buffer
	s := NewTextSink(&buf)
	if err := s.Write(sample()); err != nil {
		t.Fatal(err)
	}
	want := `2024-01-02T00:04:05.123456789Z warning app/echo 17 "request done" user=bob latency=1.5 ` +
		`count=18446744073709551615 delta=-3 ok=true none=null "quote me"="two words" html=<b>&</b> ` +
		"trace_id=00000000000000ab span_id=1234567890abcdef parent_id=0000000000000001\n"
	if got := buf.String(); got != want {
		t.Errorf("line:\n%s\nwant:\n%s", got, want)
	}
}

func TestTextSinkTimestampResolution(t *testing.T) {
	for _, tc := range []struct {
		ns   int
		want string
	}{
		{0, "2024-01-02T03:04:05.000000000Z "},
		{100, "2024-01-02T03:04:05.000000100Z "}, // 100 ns must be visible
		{1, "2024-01-02T03:04:05.000000001Z "},
		{999999999, "2024-01-02T03:04:05.999999999Z "},
	} {
		var buf bytes.Buffer
		r := &Record{Time: time.Date(2024, 1, 2, 3, 4, 5, tc.ns, time.UTC), Message: "m"}
		if err := NewTextSink(&buf).Write(r); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(buf.String(), tc.want) {
			t.Errorf("ns=%d: %q, want prefix %q", tc.ns, buf.String(), tc.want)
		}
	}
}

func TestTextSinkQuoting(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"plain", "plain"},
		{"", `""`},
		{"a b", `"a b"`},
		{"a=b", `"a=b"`},
		{`a"b`, `"a\"b"`},
		{"line\nbreak", `"line\nbreak"`},
		{"tab\t", `"tab\t"`},
		{"\xff", `"\xff"`},
		{"юникод", "юникод"},
		{`back\slash`, `"back\\slash"`},
	} {
		var buf bytes.Buffer
		r := &Record{Backend: "b", Message: tc.in}
		if err := NewTextSink(&buf).Write(r); err != nil {
			t.Fatal(err)
		}
		line := buf.String()
		if strings.Count(line, "\n") != 1 {
			t.Errorf("%q produced %d newlines", tc.in, strings.Count(line, "\n"))
		}
		if got := strings.TrimSuffix(line[strings.Index(line, " 0 ")+3:], "\n"); got != tc.want {
			t.Errorf("message %q printed as %s, want %s", tc.in, got, tc.want)
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestTextSinkErrors(t *testing.T) {
	s := NewTextSink(failWriter{})
	if err := s.Write(sample()); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("Write = %v, want the writer's error", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(sample()); !errors.Is(err, ErrSinkClosed) {
		t.Errorf("Write after Close = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// readJSONLines parses every line of the file at path, keeping numbers exact.
func readJSONLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Errorf("file does not end in a newline")
	}
	return out
}

func TestJSONSinkRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.json")
	s, err := NewJSONSink(path)
	if err != nil {
		t.Fatal(err)
	}
	r := sample()
	r.Attrs = append(r.Attrs, Attr{"nan", math.NaN()}, Attr{"inf", math.Inf(-1)})
	if err := s.Write(r); err != nil {
		t.Fatal(err)
	}
	untraced := &Record{ID: 18, Time: time.Unix(0, 100).UTC(), Severity: 7, Backend: "b", Message: "line\nbreak"}
	if err := s.Write(untraced); err != nil {
		t.Fatal(err)
	}
	// Buffered: nothing reaches the file before Flush.
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("file before Flush: %v, %v", fi, err)
	}
	if err := s.(Flusher).Flush(); err != nil {
		t.Fatal(err)
	}
	lines := readJSONLines(t, path)
	if len(lines) != 2 {
		t.Fatalf("got %d lines", len(lines))
	}
	want := map[string]any{
		"id":            json.Number("17"),
		"time":          "2024-01-02T00:04:05.123456789Z",
		"severity":      json.Number("2"),
		"severity_name": "warning",
		"backend":       "app/echo",
		"message":       "request done",
		"attrs": map[string]any{
			"user":     "bob",
			"latency":  json.Number("1.5"),
			"count":    json.Number("18446744073709551615"),
			"delta":    json.Number("-3"),
			"ok":       true,
			"none":     nil,
			"quote me": "two words",
			"html":     "<b>&</b>",
			"nan":      "NaN",
			"inf":      "-Inf",
		},
		"trace_id":  "00000000000000ab",
		"span_id":   "1234567890abcdef",
		"parent_id": "0000000000000001",
		"verbose":   true,
	}
	if !reflect.DeepEqual(lines[0], want) {
		t.Errorf("record:\n%#v\nwant:\n%#v", lines[0], want)
	}
	want2 := map[string]any{
		"id":            json.Number("18"),
		"time":          "1970-01-01T00:00:00.0000001Z",
		"severity":      json.Number("7"),
		"severity_name": "7",
		"backend":       "b",
		"message":       "line\nbreak",
		"attrs":         map[string]any{},
		"verbose":       false,
	}
	if !reflect.DeepEqual(lines[1], want2) {
		t.Errorf("untraced record:\n%#v\nwant:\n%#v", lines[1], want2)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestJSONSinkAppendsAndCloses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.json")
	for i := range 2 {
		s, err := NewJSONSink(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(&Record{ID: uint64(i)}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil { // Close flushes
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close = %v", err)
		}
		if err := s.Write(&Record{}); !errors.Is(err, ErrSinkClosed) {
			t.Errorf("Write after Close = %v", err)
		}
		if err := s.(Flusher).Flush(); !errors.Is(err, ErrSinkClosed) {
			t.Errorf("Flush after Close = %v", err)
		}
	}
	lines := readJSONLines(t, path)
	if len(lines) != 2 || lines[0]["id"] != json.Number("0") || lines[1]["id"] != json.Number("1") {
		t.Errorf("lines = %v", lines)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&^0o644 != 0 {
		t.Errorf("mode %v grants more than 0644", perm)
	}
}

func TestJSONSinkOpenError(t *testing.T) {
	_, err := NewJSONSink(filepath.Join(t.TempDir(), "missing", "log.json"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want ErrNotExist", err)
	}
}

// TestSinksConcurrent writes from many goroutines at once; under -race it checks
// locking, and the output check proves lines never interleave.
func TestSinksConcurrent(t *testing.T) {
	const writers, perWriter = 8, 200
	path := filepath.Join(t.TempDir(), "log.json")
	js, err := NewJSONSink(path)
	if err != nil {
		t.Fatal(err)
	}
	var text lockedBuffer
	s := MultiSink(js, NewTextSink(&text))
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				r := sample()
				r.ID = uint64(w*perWriter + i)
				r.Message = strings.Repeat("x", 1000) // long enough to cross bufio's buffer boundaries
				if err := s.Write(r); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := s.(Flusher).Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readJSONLines(t, path)
	seen := make(map[string]bool)
	for _, l := range lines {
		seen[l["id"].(json.Number).String()] = true
	}
	if len(lines) != writers*perWriter || len(seen) != writers*perWriter {
		t.Errorf("json: %d lines, %d distinct ids", len(lines), len(seen))
	}
	textLines := strings.Split(strings.TrimSuffix(text.String(), "\n"), "\n")
	if len(textLines) != writers*perWriter {
		t.Errorf("text: %d lines", len(textLines))
	}
	for _, l := range textLines {
		if !strings.HasPrefix(l, "2024-01-02T00:04:05.123456789Z warning app/echo ") {
			t.Fatalf("interleaved text line %q", l)
		}
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestMultiSinkErrors(t *testing.T) {
	var buf bytes.Buffer
	good := NewTextSink(&buf)
	s := MultiSink(NewTextSink(failWriter{}), good)
	err := s.Write(sample())
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("Write = %v", err)
	}
	if buf.Len() == 0 {
		t.Error("a failing sink stopped the others")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(sample()); !errors.Is(err, ErrSinkClosed) {
		t.Errorf("Write after Close = %v", err)
	}
}
