// Command cocaine-tool is the operator's CLI. It speaks to a node through its locator
// (--host/--port, or COCAINE_LOCATOR=host:port; 127.0.0.1:10053 by default) and prints
// JSON. Exit codes follow the original cocaine-tool: 0 success, 22 bad arguments, 128 a
// service error (reported on stderr with its Cocaine category and code).
//
// This is the cluster-facing subset; the app, profile, runlist, group and crashlog
// commands come with the node service.
//
//	cocaine-tool cluster members|status
//	cocaine-tool cluster leave                   # this node leaves and stops
//	cocaine-tool cluster remove ID
//	cocaine-tool cluster snapshot save FILE|restore FILE
//	cocaine-tool unicorn get|children PATH
//	cocaine-tool unicorn put PATH JSON VERSION | create PATH JSON | remove PATH [VERSION]
//	cocaine-tool unicorn watch PATH [FROM_REVISION]
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/cocaine/cocaine/rpc"
)

// Exit codes of the original cocaine-tool.
const (
	exitOK      = 0
	exitBadArgs = 22
	exitService = 128
)

const usage = `usage: cocaine-tool [--host H] [--port P] [--timeout D] <group> <command> [args]

  cluster members                      list the Raft members
  cluster status                       this node's view: leader, applied index
  cluster leave                        this node leaves the cluster and stops
  cluster remove ID                    remove a (dead) member
  cluster snapshot save FILE           write a backup of the cluster state
  cluster snapshot restore FILE        replace the cluster state by a backup
  unicorn get PATH                     [value, version]
  unicorn children PATH                [cversion, [names]]
  unicorn create PATH JSON             create a node (parents too)
  unicorn put PATH JSON VERSION        compare-and-set
  unicorn remove PATH [VERSION]        remove (any version by default)
  unicorn watch PATH [FROM_REVISION]   print every change under PATH, one JSON line each

The locator is COCAINE_LOCATOR (host:port) unless --host/--port are given.
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// badArgs is an error in the command line.
type badArgs struct{ msg string }

func (e badArgs) Error() string { return e.msg }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cocaine-tool", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	host, port := "127.0.0.1", 10053
	if env := os.Getenv("COCAINE_LOCATOR"); env != "" {
		h, p, err := splitHostPort(env)
		if err != nil {
			fmt.Fprintf(stderr, "cocaine-tool: COCAINE_LOCATOR: %v\n", err)
			return exitBadArgs
		}
		host, port = h, p
	}
	fs.StringVar(&host, "host", host, "locator `host`")
	fs.IntVar(&port, "port", port, "locator `port`")
	timeout := fs.Duration("timeout", 30*time.Second, "`timeout` of one command (watch runs until interrupted)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitBadArgs
	}
	if port < 1 || port > 65535 {
		fmt.Fprintf(stderr, "cocaine-tool: port %d is out of range\n", port)
		return exitBadArgs
	}
	rest := fs.Args()
	if len(rest) < 2 {
		fmt.Fprint(stderr, usage)
		return exitBadArgs
	}
	t := &tool{locator: []rpc.Endpoint{{Host: host, Port: uint16(port)}}, timeout: *timeout, out: stdout}
	var err error
	switch rest[0] {
	case "cluster":
		err = t.cluster(rest[1:])
	case "unicorn":
		err = t.unicorn(rest[1:])
	default:
		err = badArgs{fmt.Sprintf("unknown command group %q", rest[0])}
	}
	var ba badArgs
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ba):
		fmt.Fprintf(stderr, "cocaine-tool: %s\n%s", ba.msg, usage)
		return exitBadArgs
	}
	var e *rpc.Error
	if errors.As(err, &e) {
		fmt.Fprintf(stderr, "cocaine-tool: error [%d, %d]: %v\n", e.Category, e.Code, err)
	} else {
		fmt.Fprintf(stderr, "cocaine-tool: %v\n", err)
	}
	return exitService
}

func splitHostPort(s string) (string, int, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, 10053, nil
	}
	p, err := strconv.Atoi(s[i+1:])
	if err != nil || p < 1 || p > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", s)
	}
	return strings.Trim(s[:i], "[]"), p, nil
}

type tool struct {
	locator []rpc.Endpoint
	timeout time.Duration
	out     io.Writer
}

func (t *tool) ctx() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	return ctx, func() { cancel(); stop() }
}

// call resolves service, calls method and returns the value's args.
func (t *tool) call(ctx context.Context, service, method string, args ...any) (rpc.Args, error) {
	conn, err := rpc.Service(ctx, t.locator, service, rpc.DialConfig{})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ch, err := conn.Call(ctx, method, args...)
	if err != nil {
		return nil, err
	}
	return ch.Get(ctx)
}

// print writes the args of a reply as JSON: a single value alone, several as an array.
func (t *tool) print(a rpc.Args) error {
	d, n, err := a.Decoder()
	if err != nil {
		return err
	}
	vals := make([]any, n)
	for i := range vals {
		if vals[i], err = d.Value(); err != nil {
			return err
		}
	}
	var v any = vals
	if n == 1 {
		v = vals[0]
	}
	return t.printJSON(v)
}

func (t *tool) printJSON(v any) error {
	b, err := json.MarshalIndent(jsonable(v), "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(t.out, "%s\n", b)
	return err
}

// jsonable turns a decoded msgpack value into one encoding/json takes: raw strings that
// are not UTF-8 become base64, maps with non-string keys get their keys printed.
func jsonable(v any) any {
	switch x := v.(type) {
	case string:
		if !utf8.ValidString(x) {
			return map[string]string{"base64": base64.StdEncoding.EncodeToString([]byte(x))}
		}
		return x
	case []byte:
		return jsonable(string(x))
	case []any:
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

func need(args []string, n int, what string) error {
	if len(args) != n {
		return badArgs{fmt.Sprintf("%s: want %d argument(s), got %d", what, n, len(args))}
	}
	return nil
}

func (t *tool) cluster(args []string) error {
	ctx, cancel := t.ctx()
	defer cancel()
	switch args[0] {
	case "members", "status", "leave":
		if err := need(args[1:], 0, "cluster "+args[0]); err != nil {
			return err
		}
		a, err := t.call(ctx, "cluster", args[0])
		if err != nil {
			return err
		}
		if args[0] == "leave" {
			return t.printJSON(map[string]any{"left": true})
		}
		return t.print(a)
	case "remove":
		if err := need(args[1:], 1, "cluster remove ID"); err != nil {
			return err
		}
		if _, err := t.call(ctx, "cluster", "remove", args[1]); err != nil {
			return err
		}
		return t.printJSON(map[string]any{"removed": args[1]})
	case "snapshot":
		if len(args) != 3 || (args[1] != "save" && args[1] != "restore") {
			return badArgs{"cluster snapshot save FILE | cluster snapshot restore FILE"}
		}
		if args[1] == "save" {
			return t.snapshotSave(ctx, args[2])
		}
		return t.snapshotRestore(ctx, args[2])
	}
	return badArgs{fmt.Sprintf("unknown cluster command %q", args[0])}
}

func (t *tool) snapshotSave(ctx context.Context, path string) (err error) {
	conn, err := rpc.Service(ctx, t.locator, "cluster", rpc.DialConfig{})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Call(ctx, "snapshot_save")
	if err != nil {
		return err
	}
	tmp := path + ".partial"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() {
		f.Close()
		if err != nil {
			os.Remove(tmp)
		}
	}()
	var size int64
	for {
		m, err := ch.Recv(ctx)
		if errors.Is(err, rpc.ErrChannelClosed) {
			break
		}
		if err != nil {
			return err
		}
		if err := m.Err(); err != nil {
			return err
		}
		if m.Name == "close" {
			break
		}
		var chunk []byte
		if err := m.Args.Scan(&chunk); err != nil {
			return err
		}
		if _, err := f.Write(chunk); err != nil {
			return err
		}
		size += int64(len(chunk))
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return t.printJSON(map[string]any{"saved": path, "bytes": size})
}

func (t *tool) snapshotRestore(ctx context.Context, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return badArgs{err.Error()}
	}
	conn, err := rpc.Service(ctx, t.locator, "cluster", rpc.DialConfig{})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Call(ctx, "snapshot_restore")
	if err != nil {
		return err
	}
	for len(data) > 0 {
		n := min(len(data), 256<<10)
		if err := ch.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	if err := ch.Close(); err != nil {
		return err
	}
	if _, err := ch.Get(ctx); err != nil {
		return err
	}
	return t.printJSON(map[string]any{"restored": path})
}

func (t *tool) unicorn(args []string) error {
	ctx, cancel := t.ctx()
	defer cancel()
	cmd, args := args[0], args[1:]
	switch cmd {
	case "get", "children":
		if err := need(args, 1, "unicorn "+cmd+" PATH"); err != nil {
			return err
		}
		a, err := t.call(ctx, "unicorn", cmd, args[0])
		if err != nil {
			return err
		}
		return t.print(a)
	case "create":
		if err := need(args, 2, "unicorn create PATH JSON"); err != nil {
			return err
		}
		v, err := parseJSON(args[1])
		if err != nil {
			return err
		}
		a, err := t.call(ctx, "unicorn", "create", args[0], v)
		if err != nil {
			return err
		}
		return t.print(a)
	case "put":
		if err := need(args, 3, "unicorn put PATH JSON VERSION"); err != nil {
			return err
		}
		v, err := parseJSON(args[1])
		if err != nil {
			return err
		}
		ver, err := strconv.ParseInt(args[2], 10, 64)
		if err != nil {
			return badArgs{fmt.Sprintf("version %q is not an integer", args[2])}
		}
		a, err := t.call(ctx, "unicorn", "put", args[0], v, ver)
		if err != nil {
			return err
		}
		return t.print(a)
	case "remove":
		if len(args) < 1 || len(args) > 2 {
			return badArgs{"unicorn remove PATH [VERSION]"}
		}
		ver := int64(-1)
		if len(args) == 2 {
			var err error
			if ver, err = strconv.ParseInt(args[1], 10, 64); err != nil {
				return badArgs{fmt.Sprintf("version %q is not an integer", args[1])}
			}
		}
		a, err := t.call(ctx, "unicorn", "remove", args[0], ver)
		if err != nil {
			return err
		}
		return t.print(a)
	case "watch":
		if len(args) < 1 || len(args) > 2 {
			return badArgs{"unicorn watch PATH [FROM_REVISION]"}
		}
		from := int64(-1)
		if len(args) == 2 {
			var err error
			if from, err = strconv.ParseInt(args[1], 10, 64); err != nil {
				return badArgs{fmt.Sprintf("revision %q is not an integer", args[1])}
			}
		}
		return t.watch(args[0], from)
	}
	return badArgs{fmt.Sprintf("unknown unicorn command %q", cmd)}
}

func (t *tool) watch(path string, from int64) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	conn, err := rpc.Service(ctx, t.locator, "unicorn", rpc.DialConfig{})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Call(ctx, "watch", path, from, true)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(t.out)
	for {
		m, err := ch.Recv(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted
			}
			return err
		}
		if err := m.Err(); err != nil {
			return err
		}
		if m.Name == "close" {
			return nil
		}
		v, err := rpc.Unmarshal(m.Args)
		if err != nil {
			return err
		}
		if err := enc.Encode(jsonable(v)); err != nil {
			return err
		}
	}
}

// parseJSON reads a value given on the command line; integers stay integers.
func parseJSON(s string) (any, error) {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, badArgs{fmt.Sprintf("value %q is not JSON: %v", s, err)}
	}
	return numbers(v), nil
}

func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
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
