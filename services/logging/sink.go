package logging

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Sink is where accepted records go. Implementations are safe for concurrent use,
// and return write errors rather than panicking.
type Sink interface {
	// Write outputs one record. After Close it returns ErrSinkClosed.
	Write(r *Record) error
	// Close flushes what the sink buffered and releases what it owns. Calling it
	// again returns nil.
	Close() error
}

// Flusher is implemented by sinks that buffer: *JSONSink and MultiSink's result.
type Flusher interface {
	// Flush pushes buffered records to their destination.
	Flush() error
}

// textTimeLayout is RFC 3339 with a fixed nine-digit fraction: the original's
// records carry sub-microsecond timestamps, and fixed width keeps lines aligned
// and sortable as text.
const textTimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// TextSink writes one human-readable line per record:
//
//	2006-01-02T15:04:05.123456789Z info app/echo 17 "request done" user=bob latency=1.5
//
// time (UTC), severity name, backend, id, message, then the attributes as name=value
// and the trace ids when the record is traced. Strings that contain spaces, quotes,
// '=' or unprintable characters, or are empty, are Go-quoted, so a line is one line.
type TextSink struct {
	// mu serializes writes so that concurrent lines never interleave, and guards
	// closed.
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

// NewTextSink returns a sink writing lines to w. Each record is one w.Write call.
// Close does not close w: the caller owns it (it is often os.Stderr).
func NewTextSink(w io.Writer) Sink {
	return &TextSink{w: w}
}

// Write implements Sink.
func (s *TextSink) Write(r *Record) error {
	line := appendText(nil, r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrSinkClosed
	}
	if _, err := s.w.Write(line); err != nil {
		return fmt.Errorf("logging: text sink: %w", err)
	}
	return nil
}

// Close implements Sink.
func (s *TextSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func appendText(b []byte, r *Record) []byte {
	b = r.Time.UTC().AppendFormat(b, textTimeLayout)
	b = append(b, ' ')
	b = append(b, SeverityName(r.Severity)...)
	b = append(b, ' ')
	b = appendTextString(b, r.Backend)
	b = append(b, ' ')
	b = strconv.AppendUint(b, r.ID, 10)
	b = append(b, ' ')
	b = appendTextString(b, r.Message)
	for _, a := range r.Attrs {
		b = append(b, ' ')
		b = appendTextString(b, a.Name)
		b = append(b, '=')
		b = appendTextValue(b, a.Value)
	}
	if r.TraceID != 0 {
		b = fmt.Appendf(b, " trace_id=%016x span_id=%016x parent_id=%016x", r.TraceID, r.SpanID, r.ParentID)
	}
	return append(b, '\n')
}

func appendTextValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, x)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case uint64:
		return strconv.AppendUint(b, x, 10)
	case float64:
		return strconv.AppendFloat(b, x, 'g', -1, 64)
	case string:
		return appendTextString(b, x)
	}
	return appendTextString(b, fmt.Sprint(v))
}

func appendTextString(b []byte, s string) []byte {
	if needsQuote(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

func needsQuote(s string) bool {
	if s == "" {
		return true
	}
	for _, c := range s {
		if c == utf8.RuneError || c == '"' || c == '=' || c == '\\' || unicode.IsSpace(c) || !unicode.IsPrint(c) {
			return true
		}
	}
	return false
}

// jsonBufferSize is the JSON sink's buffer: large enough that a burst of records
// costs a few write syscalls, small enough to lose little on a crash.
const jsonBufferSize = 64 << 10

// JSONSink appends one JSON object per record to a file:
//
//	{"id":17,"time":"2006-01-02T15:04:05.123456789Z","severity":1,"severity_name":"info",
//	 "backend":"app/echo","message":"hi","attrs":{"user":"bob"},"trace_id":"00000000000000ab",
//	 "span_id":"…","parent_id":"…","verbose":false}
//
// time is RFC 3339 with nanoseconds, UTC. attrs keeps the client's order and, should
// a name repeat, every occurrence. Trace ids are 16 hex digits and omitted when zero.
// Floats JSON cannot hold (NaN, ±Inf) are written as the strings "NaN", "+Inf",
// "-Inf". Writes are buffered: call Flush to push them to the file.
type JSONSink struct {
	// mu serializes writes and guards the fields below.
	mu     sync.Mutex
	f      *os.File
	bw     *bufio.Writer
	closed bool
}

// NewJSONSink opens (creating with mode 0644 if needed) the file at path for
// appending. The sink is a *JSONSink, so it also implements Flusher.
func NewJSONSink(path string) (Sink, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("logging: open json sink: %w", err)
	}
	return &JSONSink{f: f, bw: bufio.NewWriterSize(f, jsonBufferSize)}, nil
}

// Write implements Sink. Once a write to the file fails, every later Write and Flush
// returns that error (bufio keeps it).
func (s *JSONSink) Write(r *Record) error {
	line := appendJSONRecord(nil, r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrSinkClosed
	}
	if _, err := s.bw.Write(line); err != nil {
		return fmt.Errorf("logging: json sink %s: %w", s.f.Name(), err)
	}
	return nil
}

// Flush writes buffered records to the file.
func (s *JSONSink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrSinkClosed
	}
	return s.flushLocked()
}

// Close flushes and closes the file; both errors are reported.
func (s *JSONSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	ferr := s.flushLocked()
	if err := s.f.Close(); err != nil {
		return errors.Join(ferr, fmt.Errorf("logging: close json sink %s: %w", s.f.Name(), err))
	}
	return ferr
}

// flushLocked requires s.mu.
func (s *JSONSink) flushLocked() error {
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("logging: json sink %s: %w", s.f.Name(), err)
	}
	return nil
}

func appendJSONRecord(b []byte, r *Record) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, r.ID, 10)
	b = append(b, `,"time":"`...)
	b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","severity":`...)
	b = strconv.AppendInt(b, int64(r.Severity), 10)
	b = append(b, `,"severity_name":`...)
	b = appendJSON(b, SeverityName(r.Severity))
	b = append(b, `,"backend":`...)
	b = appendJSON(b, r.Backend)
	b = append(b, `,"message":`...)
	b = appendJSON(b, r.Message)
	b = append(b, `,"attrs":{`...)
	for i, a := range r.Attrs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSON(b, a.Name)
		b = append(b, ':')
		b = appendJSON(b, jsonValue(a.Value))
	}
	b = append(b, '}')
	for _, id := range []struct {
		key string
		v   uint64
	}{{"trace_id", r.TraceID}, {"span_id", r.SpanID}, {"parent_id", r.ParentID}} {
		if id.v != 0 {
			b = fmt.Appendf(b, `,"%s":"%016x"`, id.key, id.v)
		}
	}
	b = append(b, `,"verbose":`...)
	b = strconv.AppendBool(b, r.Verbose)
	return append(b, "}\n"...)
}

// jsonValue maps an attribute value to one encoding/json can always encode.
func jsonValue(v any) any {
	switch x := v.(type) {
	case nil, bool, int64, uint64, string:
		return x
	case float64:
		switch {
		case math.IsNaN(x):
			return "NaN"
		case math.IsInf(x, 1):
			return "+Inf"
		case math.IsInf(x, -1):
			return "-Inf"
		}
		return x
	}
	return fmt.Sprint(v)
}

// appendJSON appends v encoded as JSON without HTML escaping (these are log files,
// not web pages, and "<" should read as "<"). v is always encodable here: strings
// and the values jsonValue returns.
func appendJSON(b []byte, v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Unreachable for the types passed in; keep the line valid JSON anyway.
		return append(b, "null"...)
	}
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})...)
}

// MultiSink returns a sink that writes every record to each of sinks in order. Write,
// Flush and Close go on past a failing sink and return every error joined.
func MultiSink(sinks ...Sink) Sink {
	return &multiSink{sinks: append([]Sink(nil), sinks...)}
}

type multiSink struct {
	sinks []Sink
}

func (m *multiSink) Write(r *Record) error {
	var errs []error
	for _, s := range m.sinks {
		if err := s.Write(r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Flush flushes the sinks that buffer (those with a Flush method).
func (m *multiSink) Flush() error {
	var errs []error
	for _, s := range m.sinks {
		if f, ok := s.(Flusher); ok {
			if err := f.Flush(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (m *multiSink) Close() error {
	var errs []error
	for _, s := range m.sinks {
		if err := s.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
