package node

import (
	"bytes"
	"log/slog"
	"sync"
)

// output collects a worker's stdout and stderr: it keeps the last lines for the crash
// log (plugins.md §2.14: the last crashlog-limit complete lines plus the trailing
// partial one) and hands every complete line to the sink.
type output struct {
	app, uuid string
	sink      OutputSink
	log       *slog.Logger // nil unless the profile sets log-output
	limit     int

	mu      sync.Mutex
	lines   []string // ring of the last limit lines
	next    int      // where the next line goes once the ring is full
	partial []byte
}

// maxLine bounds one line; longer output is split, so a worker that never prints a
// newline cannot grow the node's memory.
const maxLine = 64 << 10

func newOutput(app, uuid string, limit int, sink OutputSink, log *slog.Logger) *output {
	return &output{app: app, uuid: uuid, limit: limit, sink: sink, log: log}
}

// Write implements io.Writer.
func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxLine - len(o.partial)
			if len(p) < room {
				o.partial = append(o.partial, p...)
				break
			}
			o.partial = append(o.partial, p[:room]...)
			p = p[room:]
			o.lineLocked()
			continue
		}
		o.partial = append(o.partial, p[:i]...)
		p = p[i+1:]
		o.lineLocked()
	}
	return n, nil
}

func (o *output) lineLocked() {
	line := string(bytes.TrimSuffix(o.partial, []byte{'\r'}))
	o.partial = o.partial[:0]
	if o.sink != nil {
		o.sink.WorkerOutput(o.app, o.uuid, line)
	}
	if o.log != nil {
		o.log.Debug("worker output", "line", line)
	}
	if o.limit <= 0 {
		return
	}
	if len(o.lines) < o.limit {
		o.lines = append(o.lines, line)
		return
	}
	o.lines[o.next] = line
	o.next = (o.next + 1) % o.limit
}

// Last returns the kept lines, oldest first, with the trailing partial line.
func (o *output) Last() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]string, 0, len(o.lines)+1)
	out = append(out, o.lines[o.next:]...)
	out = append(out, o.lines[:o.next]...)
	if len(o.partial) > 0 {
		out = append(out, string(o.partial))
	}
	return out
}
