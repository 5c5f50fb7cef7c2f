// Command cocaine is the node daemon: `cocaine run` starts a node.
//
// Configuration is merged in this order: built-in defaults, then the JSON config file
// given with --config (every key checked; unknown keys are errors), then flags. With no
// flags at all, `cocaine run` is a single-node cluster on 127.0.0.1 with the locator on
// port 10053, raft on 10052 and its data under /var/lib/cocaine (root) or
// ~/.local/share/cocaine; `cocaine run --join HOST[:PORT]` joins an existing cluster
// through any member's locator.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/cocaine/cocaine/internal/daemon"
)

const usage = `usage: cocaine <command> [flags]

commands:
  run       start a node (a single-node cluster with no flags)
  config    print the effective configuration as JSON and exit
  version   print the version

Run 'cocaine run -h' for the flags.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		cfg, logOpts, err := parseRun(args[1:], stderr)
		if err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			fmt.Fprintf(stderr, "cocaine: %v\n", err)
			return 2
		}
		return run(cfg, logOpts, stderr)
	case "config":
		cfg, _, err := parseRun(args[1:], stderr)
		if err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			fmt.Fprintf(stderr, "cocaine: %v\n", err)
			return 2
		}
		out, _ := json.MarshalIndent(cfg, "", "  ")
		fmt.Fprintf(stdout, "%s\n", out)
		return 0
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "cocaine %s\n", version)
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "cocaine: unknown command %q\n%s", args[0], usage)
	return 2
}

// logOptions configure the daemon's own log (not the logging service's sinks).
type logOptions struct {
	level  slog.Level
	format string
}

// parseRun merges defaults, the config file and flags, and validates the result.
func parseRun(args []string, stderr io.Writer) (daemon.Config, logOptions, error) {
	cfg := daemon.DefaultConfig()
	lo := logOptions{level: slog.LevelInfo, format: "text"}
	fs := flag.NewFlagSet("cocaine run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "JSON config `file` (see README: Configuration)")
	dataDir := fs.String("data-dir", "", "data `directory` (default "+cfg.DataDir+")")
	endpoint := fs.String("endpoint", "", "`address` every service binds (default 127.0.0.1)")
	locatorPort := fs.Int("locator-port", -1, "locator `port` (default 10053; 0 picks a free one)")
	raftPort := fs.Int("raft-port", -1, "raft `port` (default 10052; 0 picks a free one, which changes at each start)")
	join := fs.String("join", "", "join an existing cluster through these locator `endpoints` (host[:port],...; port 10053 by default)")
	uuid := fs.String("uuid", "", "node `id` (default: generated once, kept in the data dir)")
	logLevel := fs.String("log-level", "info", "daemon log `level`: debug, info, warn, error")
	logFormat := fs.String("log-format", "text", "daemon log `format`: text or json")
	if err := fs.Parse(args); err != nil {
		return cfg, lo, err
	}
	if fs.NArg() > 0 {
		return cfg, lo, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *configPath != "" {
		if err := loadConfig(*configPath, &cfg); err != nil {
			return cfg, lo, err
		}
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if *endpoint != "" {
		cfg.Network.Endpoint = *endpoint
	}
	if *locatorPort >= 0 {
		if cfg.Network.Pinned == nil {
			cfg.Network.Pinned = map[string]int{}
		}
		cfg.Network.Pinned["locator"] = *locatorPort
	}
	if *raftPort >= 0 {
		if cfg.Network.Pinned == nil {
			cfg.Network.Pinned = map[string]int{}
		}
		cfg.Network.Pinned["raft"] = *raftPort
	}
	if *join != "" {
		cfg.Raft.Join = strings.Split(*join, ",")
	}
	if *uuid != "" {
		cfg.UUID = *uuid
	}
	if err := lo.level.UnmarshalText([]byte(*logLevel)); err != nil {
		return cfg, lo, fmt.Errorf("--log-level: %w", err)
	}
	if *logFormat != "text" && *logFormat != "json" {
		return cfg, lo, fmt.Errorf("--log-format must be text or json, got %q", *logFormat)
	}
	lo.format = *logFormat
	if err := cfg.Validate(); err != nil {
		return cfg, lo, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, lo, nil
}

// loadConfig reads a JSON config file over cfg. Unknown keys are errors, with their path.
func loadConfig(path string, cfg *daemon.Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(cfg); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line := 1 + bytes.Count(data[:se.Offset], []byte("\n"))
			return fmt.Errorf("config %s: line %d: %v", path, line, err)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			// A truncated or empty file: the decoder reports no offset, so name the last line.
			line := 1 + bytes.Count(bytes.TrimRight(data, " \t\r\n"), []byte("\n"))
			return fmt.Errorf("config %s: line %d: unexpected end of file", path, line)
		}
		return fmt.Errorf("config %s: %v", path, err)
	}
	if dec.More() {
		return fmt.Errorf("config %s: more than one JSON value", path)
	}
	// Free-form values travel on the wire: give them msgpack's integer types, not strings.
	for k, v := range cfg.Locator.Extra {
		cfg.Locator.Extra[k] = jsonNumbers(v)
	}
	for i, v := range cfg.Logging.DefaultFilter {
		cfg.Logging.DefaultFilter[i] = jsonNumbers(v)
	}
	return nil
}

// jsonNumbers replaces json.Number in a decoded JSON value by uint64 (non-negative
// integers), int64 (negative ones) or float64.
func jsonNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			if i >= 0 {
				return uint64(i)
			}
			return i
		}
		if u, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			return u
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i, e := range x {
			x[i] = jsonNumbers(e)
		}
	case map[string]any:
		for k, e := range x {
			x[k] = jsonNumbers(e)
		}
	}
	return v
}

func run(cfg daemon.Config, lo logOptions, stderr io.Writer) int {
	hopts := &slog.HandlerOptions{Level: lo.level}
	var h slog.Handler = slog.NewTextHandler(stderr, hopts)
	if lo.format == "json" {
		h = slog.NewJSONHandler(stderr, hopts)
	}
	log := slog.New(h)
	d, err := daemon.New(cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() { // tell the operator where the node is, once it is
		select {
		case <-d.Ready():
			eps := d.Endpoint("locator")
			addrs := make([]string, len(eps))
			for i, e := range eps {
				addrs[i] = e.String()
			}
			log.Info("node ready", "uuid", d.UUID(), "locator", strings.Join(addrs, ","), "pid", strconv.Itoa(os.Getpid()))
		case <-ctx.Done():
		}
	}()
	if err := d.Run(ctx); err != nil {
		log.Error("node failed", "err", err)
		return 1
	}
	return 0
}
