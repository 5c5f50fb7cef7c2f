// Command cocaine-tool is the operator's CLI of cocaine, compatible with the original
// cocaine-tool 0.12 (shared/spec/clients.md §4): the same command groups, options,
// storage conventions, JSON output and exit codes, so that scripts written for the
// original keep working; and `-o table`, `--help` with an example on every command, bash
// completion and a progress bar for people at a terminal.
//
// It finds every service through the locator: --host/--port, else COCAINE_LOCATOR
// (host:port), else 127.0.0.1:10053. Exit codes: 0 success, 22 bad arguments, 128 a
// service error, reported as one line on stderr with its Cocaine category and code:
//
//	cocaine-tool: error [20991, 6] node.not_running: app 'x' is not running
//
// Commands (each file of this directory holds a group; `cocaine-tool --help` lists
// them all): app, profile, runlist, group, crashlog, info, locate/resolve, routing,
// uuid, cluster, unicorn, storage, logging (logs), call, completion, version.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// Exit codes of the original cocaine-tool.
const (
	exitOK      = 0
	exitBadArgs = 22 // EINVAL, the original's ValueError
	exitService = 128
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.12.14.6-cocaine"

// defaultTimeout bounds a command, as the original's --timeout default (20 s).
const defaultTimeout = 20 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	e := &env{
		ctx: ctx, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv,
		stderrTTY: isTerminal(os.Stderr),
	}
	code := e.run(os.Args[1:])
	stop()
	os.Exit(code)
}

// env is what one run of the tool talks to: the process's streams and environment in
// main, buffers and a test's context in the tests.
type env struct {
	ctx       context.Context // cancelled on SIGINT/SIGTERM: watch and lock end there
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	getenv    func(string) string
	stderrTTY bool // draw progress bars
}

// allGroups is every command group and top-level command.
func allGroups() []*group {
	gs := []*group{
		appGroup(), profileGroup(), runlistGroup(), groupGroup(), crashlogGroup(),
		clusterGroup(), unicornGroup(), storageGroup(), loggingGroup(),
	}
	gs = append(gs, locatorCommands()...)
	gs = append(gs, callGroup(), completionGroup(), single(&command{
		name: "version", summary: "print the version", maxArgs: 0, example: "cocaine-tool version",
		run: func(x *inv) error { _, err := fmt.Fprintln(x.stdout(), version); return err },
	}))
	return gs
}

// single makes a top-level command.
func single(c *command, aliases ...string) *group {
	return &group{name: c.name, aliases: aliases, summary: c.summary, commands: []*command{c}}
}

// run runs one command line and returns the exit code.
func (e *env) run(args []string) int {
	groups := allGroups()
	// Global options may come first; the group word follows.
	pre, _, rest, err := parseArgs(globalOptions, args, true)
	if err != nil {
		return e.fail(err)
	}
	if len(rest) == 0 {
		if pre.has("help") {
			topHelp(e.stdout, groups)
			return exitOK
		}
		topHelp(e.stderr, groups)
		return exitBadArgs
	}
	if rest[0] == "help" {
		return e.help(groups, rest[1:])
	}
	g := findGroup(groups, rest[0])
	if g == nil {
		return e.fail(badf("unknown command %q (run 'cocaine-tool --help' for the list)", rest[0]))
	}
	rest = rest[1:]
	var cmd *command
	switch {
	case g.single():
		cmd = g.commands[0]
	case len(rest) > 0 && !strings.HasPrefix(rest[0], "-"):
		if cmd = findCommand(g, rest[0]); cmd == nil {
			return e.fail(badf("unknown command %q in %s (run 'cocaine-tool %s --help')", rest[0], g.name, g.name))
		}
		rest = rest[1:]
	case g.def != nil:
		cmd = g.def
	default:
		if pre.has("help") || (len(rest) > 0 && (rest[0] == "-h" || rest[0] == "--help")) {
			groupHelp(e.stdout, g)
			return exitOK
		}
		groupHelp(e.stderr, g)
		return exitBadArgs
	}
	if cmd == g.def && hasHelp(rest) {
		groupHelp(e.stdout, g)
		return exitOK
	}
	vals, pos, _, err := parseArgs(append(append([]option(nil), cmd.opts...), globalOptions...), rest, false)
	if err != nil {
		return e.failCmd(cmd, err)
	}
	for k, v := range pre {
		vals[k] = append(v, vals[k]...)
	}
	if vals.has("help") {
		commandHelp(e.stdout, cmd)
		return exitOK
	}
	if cmd.nameArg && !vals.has("name") && len(pos) > 0 {
		vals["name"], pos = pos[:1], pos[1:]
	}
	if len(pos) < cmd.minArgs || (cmd.maxArgs >= 0 && len(pos) > cmd.maxArgs) {
		return e.failCmd(cmd, badf("%s: wrong number of arguments (%d)", cmd.name, len(pos)))
	}
	t, err := e.newTool(vals)
	if err != nil {
		return e.failCmd(cmd, err)
	}
	defer t.close()
	x := &inv{t: t, cmd: cmd, opts: vals, args: pos}
	return e.fail(cmd.run(x))
}

func hasHelp(tokens []string) bool {
	for _, s := range tokens {
		if s == "-h" || s == "--help" {
			return true
		}
	}
	return false
}

// help answers `cocaine-tool help [group [command]]`.
func (e *env) help(groups []*group, words []string) int {
	if len(words) == 0 {
		topHelp(e.stdout, groups)
		return exitOK
	}
	g := findGroup(groups, words[0])
	if g == nil {
		return e.fail(badf("unknown command %q", words[0]))
	}
	if g.single() {
		commandHelp(e.stdout, g.commands[0])
		return exitOK
	}
	if len(words) == 1 {
		groupHelp(e.stdout, g)
		return exitOK
	}
	c := findCommand(g, words[1])
	if c == nil {
		return e.fail(badf("unknown command %q in %s", words[1], g.name))
	}
	commandHelp(e.stdout, c)
	return exitOK
}

// failCmd reports a bad command line with the command's usage line.
func (e *env) failCmd(c *command, err error) int {
	code := e.fail(err)
	if code == exitBadArgs {
		fmt.Fprintf(e.stderr, "usage: %s (see --help)\n", c.synopsis())
	}
	return code
}

// exitCode is returned by a command that ends with a given status (the command run by
// `unicorn lock PATH -- CMD`).
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// fail prints err as one line on stderr and returns the exit code for it.
func (e *env) fail(err error) int {
	if err == nil {
		return exitOK
	}
	var ec exitCode
	if errors.As(err, &ec) {
		return int(ec)
	}
	var ba badArgs
	if errors.As(err, &ba) {
		fmt.Fprintf(e.stderr, "cocaine-tool: %s\n", ba.msg)
		return exitBadArgs
	}
	fmt.Fprintf(e.stderr, "cocaine-tool: %s\n", describe(err))
	return exitService
}

// describe renders a service error as "error [category, code] name: message", with the
// context the tool added around the remote message.
func describe(err error) string {
	var to timeoutError
	if errors.As(err, &to) {
		return to.Error()
	}
	var e *rpc.Error
	if !errors.As(err, &e) {
		return err.Error()
	}
	msg := strings.Replace(err.Error(), e.Error(), e.Message, 1)
	// Services often wrap their sentinel, whose text carries the code again.
	msg = strings.ReplaceAll(msg, fmt.Sprintf(" [%d:%d]", e.Category, e.Code), "")
	if msg == "" {
		msg = "(no message)"
	}
	return fmt.Sprintf("error [%d, %d] %s: %s", e.Category, e.Code, errorName(e.Category, e.Code), msg)
}

// timeoutError is a command that ran out of --timeout.
type timeoutError struct{ d time.Duration }

func (e timeoutError) Error() string {
	return fmt.Sprintf("timed out after %s (raise it with --timeout)", e.d)
}

// parseTimeout reads --timeout: seconds as the original ("20", "1.5") or a Go duration.
func parseTimeout(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 || f > 1e9 {
			return 0, badf("--timeout %q is out of range", s)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, badf("--timeout %q is neither seconds nor a duration", s)
	}
	return d, nil
}

// parseLocator reads the locator endpoint from COCAINE_LOCATOR, --host and --port.
func parseLocator(vals values, getenv func(string) string) (rpc.Endpoint, error) {
	ep := rpc.DefaultLocator
	if s := getenv("COCAINE_LOCATOR"); s != "" {
		host, port, err := splitHostPort(s)
		if err != nil {
			return ep, badf("COCAINE_LOCATOR: %v", err)
		}
		ep = rpc.Endpoint{Host: host, Port: uint16(port)}
	}
	if vals.has("host") {
		ep.Host = strings.Trim(vals.str("host"), "[]")
		if ep.Host == "" {
			return ep, badf("--host is empty")
		}
	}
	if vals.has("port") {
		p, err := strconv.Atoi(vals.str("port"))
		if err != nil || p < 1 || p > 65535 {
			return ep, badf("--port %q is not a port number (1-65535)", vals.str("port"))
		}
		ep.Port = uint16(p)
	}
	return ep, nil
}

// splitHostPort reads "host", "host:port" or "[v6]:port".
func splitHostPort(s string) (string, int, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 || (strings.Count(s, ":") > 1 && !strings.Contains(s, "]")) {
		return strings.Trim(s, "[]"), 10053, nil
	}
	p, err := strconv.Atoi(s[i+1:])
	if err != nil || p < 1 || p > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", s)
	}
	return strings.Trim(s[:i], "[]"), p, nil
}
