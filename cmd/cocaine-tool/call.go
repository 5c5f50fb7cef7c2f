package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"

	"github.com/cocaine/cocaine/rpc"
)

func callGroup() *group {
	return single(&command{name: "call", args: "SERVICE [METHOD [ARGS...]]", minArgs: 1, maxArgs: -1,
		summary: "call any method of any service (an app too), by name from the graph the locator gives",
		help: `Each ARG is JSON ("42", '{"a": 1}', '["x"]'); anything that is not JSON is a string, so
'call storage read manifests echo' works. Without METHOD, the service's methods are
listed. If the method takes a stream from the caller (an app's enqueue does), each
--write DATA is sent as a chunk, or stdin with --stdin, then close. A single reply is
printed as JSON; a stream, one JSON line per chunk as it arrives (--raw: string chunks
as they are, as an app's answer). An error reply exits 128 with its category and code.`,
		opts: []option{
			{short: "w", long: "write", arg: "DATA", help: "send DATA as a chunk (repeat for more)", multi: true},
			{long: "stdin", help: "send stdin as the stream of chunks"},
			{long: "raw", help: "print string chunks as they are, not as JSON"},
		},
		run:     callCmd,
		example: "cocaine-tool call echo enqueue ping --write hello --raw\ncocaine-tool call unicorn get /config/answer\ncocaine-tool call node"})
}

// callArg is an argument given on the command line: JSON if it parses, else the string.
func callArg(s string) any {
	if v, err := parseJSONBytes([]byte(s)); err == nil {
		return v
	}
	return s
}

func callCmd(x *inv) error {
	service := x.args[0]
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	if len(x.args) == 1 {
		r, err := resolve(ctx, x.t, service)
		if err != nil {
			return err
		}
		v := resolveJSON(r)
		methods := map[string]any{}
		tbl := &table{header: []string{"ID", "METHOD", "STREAM_IN", "REPLY"}}
		for _, m := range r.Graph.Methods() {
			if m.ID < rpc.ControlGoaway {
				methods[m.Name] = map[string]any{"id": m.ID, "stream_in": streamsIn(m), "reply": replyKind(m.Upstream)}
				tbl.add(m.ID, m.Name, streamsIn(m), replyKind(m.Upstream))
			}
		}
		v["methods"] = methods
		return x.show(v, tbl)
	}
	method := x.args[1]
	args := make([]any, 0, len(x.args)-2)
	for _, a := range x.args[2:] {
		args = append(args, callArg(a))
	}
	c, err := x.t.conn(ctx, service)
	if err != nil {
		return err
	}
	m, ok := c.Graph().MethodByName(method)
	if !ok {
		var names []string
		for _, m := range c.Graph().Methods() {
			if m.ID < rpc.ControlGoaway {
				names = append(names, m.Name)
			}
		}
		sort.Strings(names)
		return badf("call: %s has no method %q (it has %v)", service, method, names)
	}
	chunks := x.opts["write"]
	if (len(chunks) > 0 || x.opts.has("stdin")) && !streamsIn(m) {
		return badf("call: %s.%s takes no stream (--write, --stdin)", service, method)
	}
	ch, err := c.Call(ctx, method, args...)
	if err != nil {
		return err
	}
	if streamsIn(m) {
		if err := sendStream(x, ch, chunks); err != nil {
			return err
		}
	}
	if m.Upstream.IsTerminal() {
		return nil // a mute method: nothing comes back
	}
	streaming := replyKind(m.Upstream) == "stream"
	for {
		msg, err := ch.Recv(ctx)
		if errors.Is(err, rpc.ErrChannelClosed) {
			return nil
		}
		if err != nil {
			return wrapCtx(ctx, err)
		}
		if err := msg.Err(); err != nil {
			return err
		}
		if msg.Name == "close" {
			return nil
		}
		v, err := decodeArgs(msg.Args)
		if err != nil {
			return err
		}
		if msg.Name != "write" && msg.Name != "value" {
			v = map[string]any{msg.Name: v}
		}
		switch s, isStr := v.(string); {
		case x.opts.has("raw") && isStr:
			if _, err := io.WriteString(x.stdout(), s); err != nil {
				return err
			}
		case streaming:
			if _, err := fmt.Fprintln(x.stdout(), compactJSON(v)); err != nil {
				return err
			}
		default:
			if err := x.show(v, nil); err != nil {
				return err
			}
		}
	}
}

// sendStream sends the caller's chunks, then close.
func sendStream(x *inv, ch *rpc.Channel, chunks []string) error {
	for _, c := range chunks {
		if err := ch.SendName("write", c); err != nil {
			return err
		}
	}
	if x.opts.has("stdin") {
		buf := make([]byte, 64<<10)
		for {
			n, err := x.t.env.stdin.Read(buf)
			if n > 0 {
				if err := ch.SendName("write", append([]byte(nil), buf[:n]...)); err != nil {
					return err
				}
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return toolErrorf("reading stdin: %v", err)
			}
		}
	}
	return ch.SendName("close")
}

// streamsIn reports whether a method takes a stream of chunks from the caller.
func streamsIn(m rpc.Method) bool {
	_, ok := m.Dispatch.LookupName("write")
	return ok
}

// replyKind names a method's upstream protocol: a single value, a stream, nothing.
func replyKind(s *rpc.State) string {
	switch {
	case s == nil:
		return "recursive"
	case s.IsTerminal():
		return "none"
	}
	if t, ok := s.LookupName("write"); ok && t.Next == nil {
		return "stream"
	}
	if _, ok := s.LookupName("value"); ok {
		return "value"
	}
	names := []string{}
	for _, t := range s.Transitions() {
		names = append(names, t.Name+"="+strconv.FormatUint(t.ID, 10))
	}
	return fmt.Sprint(names)
}
