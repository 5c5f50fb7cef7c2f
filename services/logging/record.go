package logging

import (
	"strconv"
	"time"
)

// Severity levels the service names in its output. Any other int is accepted and
// printed as a number.
const (
	SeverityDebug   = 0
	SeverityInfo    = 1
	SeverityWarning = 2
	SeverityError   = 3
)

// SourceAttr is the name of the attribute every record carries implicitly: its
// backend. The original appends it after the client's attributes, so filters can
// select on it (["==", "source", "app/echo"]).
const SourceAttr = "source"

// Record is one log record as the service received it. A Record is not safe for
// concurrent mutation; filters and sinks only read it.
type Record struct {
	ID       uint64    // unique per process, strictly increasing (assigned by the service)
	Time     time.Time // when received; sinks print it with nanosecond resolution
	Severity int       // 0 debug, 1 info, 2 warning, 3 error (any int accepted)
	Backend  string    // the logger name the client sent (conventionally "app/<name>")
	Message  string
	Attrs    []Attr // in the order the client sent them
	Verbose  bool   // the request's trace_bit header was "1"

	TraceID, SpanID, ParentID uint64 // 0 when untraced
}

// Attr is one client-supplied attribute. Value is nil, bool, int64, uint64, float64
// or string: the shapes a msgpack attribute can decode to.
type Attr struct {
	Name  string
	Value any
}

// Lookup returns the value filters see for the attribute name: the first client
// attribute with that name, else the record's backend for "source". The order
// matters because the original filters scan the attribute list front to back and
// append "source" last, so a client attribute named "source" shadows the backend.
// Severity and message are not attributes: the original passes severity beside the
// attribute list and never exposes the message to filters.
func (r *Record) Lookup(name string) (any, bool) {
	for i := range r.Attrs {
		if r.Attrs[i].Name == name {
			return r.Attrs[i].Value, true
		}
	}
	if name == SourceAttr {
		return r.Backend, true
	}
	return nil, false
}

// SeverityName returns the lowercase name of a severity level, or its decimal form
// when the level has no name.
func SeverityName(s int) string {
	switch s {
	case SeverityDebug:
		return "debug"
	case SeverityInfo:
		return "info"
	case SeverityWarning:
		return "warning"
	case SeverityError:
		return "error"
	}
	return strconv.Itoa(s)
}
