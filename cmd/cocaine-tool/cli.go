package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// option is one command-line option. Options may come anywhere after the command words,
// as click (the original's parser) allows: "-n NAME", "-nNAME", "--name NAME",
// "--name=NAME"; short flags combine ("-mp", "-vvv"); "--" ends the options. In long
// names '_' and '-' are the same, so the original's "--filter_def" and "--filter-def"
// both work.
type option struct {
	short string // one letter, or ""
	long  string // the long name, and the key the value is kept under
	arg   string // the value's metavar; "" for a flag
	help  string
	multi bool // may be repeated: every value is kept
}

// command is one command: a group word and a command word ("app upload"), or one word
// ("info").
type command struct {
	name    string   // "app upload"
	aliases []string // other names of the last word ("stop" for "app pause")
	args    string   // synopsis of the positional arguments
	minArgs int      // positional arguments required
	maxArgs int      // at most this many; -1: any number
	nameArg bool     // the first positional argument may stand for -n/--name
	summary string   // one line, lower case, no final period
	help    string   // more, optional
	example string   // one or more command lines
	opts    []option
	run     func(x *inv) error
}

// group is a command group ("app"), or a top-level command on its own (then it has one
// command of the same name and no subcommands).
type group struct {
	name     string
	aliases  []string
	summary  string
	commands []*command
	// def runs when the group is given without a command word ("cluster" alone is the
	// original's locator cluster listing).
	def *command
}

// globalOptions are accepted by every command, before the group or after the command.
var globalOptions = []option{
	{long: "host", arg: "HOST", help: "locator host (default 127.0.0.1, or COCAINE_LOCATOR)"},
	{long: "port", arg: "PORT", help: "locator port (default 10053, or COCAINE_LOCATOR)"},
	{long: "timeout", arg: "SECONDS", help: "bound on the whole command: seconds or a duration (20, 1.5, 2m); 0 for none"},
	{short: "o", long: "output", arg: "FORMAT", help: "json (the default: as the original cocaine-tool) or table (aligned columns)"},
	{short: "v", long: "verbose", help: "say what is being done on stderr (repeat for more)", multi: true},
	{short: "h", long: "help", help: "show this help"},
}

// badArgs is an error in the command line: exit code 22, as the original's ValueError.
type badArgs struct{ msg string }

func (e badArgs) Error() string { return e.msg }

func badf(format string, args ...any) error { return badArgs{fmt.Sprintf(format, args...)} }

// values are the parsed options of one invocation, by long name.
type values map[string][]string

func (v values) str(name string) string {
	if s := v[name]; len(s) > 0 {
		return s[len(s)-1]
	}
	return ""
}

func (v values) has(name string) bool { return len(v[name]) > 0 }

func normLong(s string) string { return strings.ReplaceAll(s, "_", "-") }

// lookup finds an option by its short letter or long name among opts.
func lookup(opts []option, short, long string) (option, bool) {
	for _, o := range opts {
		if (short != "" && o.short == short) || (long != "" && normLong(o.long) == normLong(long)) {
			return o, true
		}
	}
	return option{}, false
}

// looksNumeric reports whether s is a negative number ("-1"), which is a positional
// argument (a unicorn version), not an option.
func looksNumeric(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// parseArgs splits tokens into option values and positional arguments. stopAtArg makes
// it stop at the first positional argument and return the rest unparsed (for the options
// given before the command words).
func parseArgs(opts []option, tokens []string, stopAtArg bool) (values, []string, []string, error) {
	vals := values{}
	var pos []string
	set := func(o option, v string) error {
		if !o.multi && o.arg != "" && vals.has(o.long) && vals.str(o.long) != v {
			return badf("%s given twice (%q and %q)", optName(o), vals.str(o.long), v)
		}
		vals[o.long] = append(vals[o.long], v)
		return nil
	}
	for i := 0; i < len(tokens); i++ {
		tok := tokens[i]
		switch {
		case tok == "--":
			return vals, append(pos, tokens[i+1:]...), nil, nil
		case tok == "-" || !strings.HasPrefix(tok, "-") || looksNumeric(tok):
			if stopAtArg {
				return vals, pos, tokens[i:], nil
			}
			pos = append(pos, tok)
		case strings.HasPrefix(tok, "--"):
			name, val, hasVal := strings.Cut(tok[2:], "=")
			o, ok := lookup(opts, "", name)
			if !ok {
				return nil, nil, nil, badf("unknown option --%s%s", name, suggest(opts, name))
			}
			if o.arg == "" {
				if hasVal {
					return nil, nil, nil, badf("%s takes no value", optName(o))
				}
				vals[o.long] = append(vals[o.long], "true")
				continue
			}
			if !hasVal {
				if i+1 >= len(tokens) {
					return nil, nil, nil, badf("%s needs a value (%s)", optName(o), o.arg)
				}
				i++
				val = tokens[i]
			}
			if err := set(o, val); err != nil {
				return nil, nil, nil, err
			}
		default: // one or more short options
			for j := 1; j < len(tok); j++ {
				o, ok := lookup(opts, tok[j:j+1], "")
				if !ok {
					return nil, nil, nil, badf("unknown option -%s", tok[j:j+1])
				}
				if o.arg == "" {
					vals[o.long] = append(vals[o.long], "true")
					continue
				}
				val := tok[j+1:]
				if val == "" {
					if i+1 >= len(tokens) {
						return nil, nil, nil, badf("%s needs a value (%s)", optName(o), o.arg)
					}
					i++
					val = tokens[i]
				}
				if err := set(o, val); err != nil {
					return nil, nil, nil, err
				}
				break
			}
		}
	}
	return vals, pos, nil, nil
}

func optName(o option) string {
	switch {
	case o.short != "" && o.long != "":
		return "-" + o.short + "/--" + o.long
	case o.short != "":
		return "-" + o.short
	}
	return "--" + o.long
}

// suggest names the option closest to a mistyped one.
func suggest(opts []option, name string) string {
	best, dist := "", 3
	for _, o := range opts {
		if d := editDistance(normLong(name), normLong(o.long)); d < dist {
			best, dist = o.long, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean --%s?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// findGroup returns the group named (or aliased) name.
func findGroup(groups []*group, name string) *group {
	for _, g := range groups {
		if g.name == name || slices.Contains(g.aliases, name) {
			return g
		}
	}
	return nil
}

// findCommand returns the command of g named (or aliased) word.
func findCommand(g *group, word string) *command {
	for _, c := range g.commands {
		last := c.name[strings.LastIndexByte(c.name, ' ')+1:]
		if last == word || slices.Contains(c.aliases, word) {
			return c
		}
	}
	return nil
}

// single reports whether g is a top-level command rather than a group.
func (g *group) single() bool { return len(g.commands) == 1 && g.commands[0].name == g.name }

// synopsis is the usage line of c.
func (c *command) synopsis() string {
	var b strings.Builder
	b.WriteString("cocaine-tool ")
	b.WriteString(c.name)
	if c.nameArg {
		b.WriteString(" -n NAME")
	}
	if c.args != "" {
		b.WriteString(" ")
		b.WriteString(c.args)
	}
	if len(c.opts) > 0 {
		b.WriteString(" [options]")
	}
	return b.String()
}

func writeOptions(w io.Writer, title string, opts []option) {
	if len(opts) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s:\n", title)
	rows := make([][2]string, len(opts))
	width := 0
	for i, o := range opts {
		s := "    --" + o.long
		if o.short != "" {
			s = "-" + o.short + ", --" + o.long
		}
		if o.arg != "" {
			s += " " + o.arg
		}
		rows[i] = [2]string{s, o.help}
		width = max(width, len(s))
	}
	for _, r := range rows {
		fmt.Fprintf(w, "  %-*s  %s\n", width, r[0], r[1])
	}
}

// commandHelp prints c's usage, options and example.
func commandHelp(w io.Writer, c *command) {
	fmt.Fprintf(w, "usage: %s\n\n", c.synopsis())
	fmt.Fprintf(w, "%s%s.\n", strings.ToUpper(c.summary[:1]), c.summary[1:])
	if c.help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.help))
	}
	if len(c.aliases) > 0 {
		fmt.Fprintf(w, "\nalso: %s\n", strings.Join(c.aliases, ", "))
	}
	writeOptions(w, "options", c.opts)
	writeOptions(w, "global options", globalOptions)
	if c.example != "" {
		fmt.Fprintf(w, "\nexample:\n")
		for _, l := range strings.Split(strings.TrimSpace(c.example), "\n") {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}

// groupHelp lists g's commands.
func groupHelp(w io.Writer, g *group) {
	fmt.Fprintf(w, "usage: cocaine-tool %s <command> [arguments] [options]\n\n", g.name)
	fmt.Fprintf(w, "%s%s.\n\ncommands:\n", strings.ToUpper(g.summary[:1]), g.summary[1:])
	label := func(c *command) string {
		s := c.name[len(g.name)+1:]
		if len(c.aliases) > 0 {
			s += " (" + strings.Join(c.aliases, ", ") + ")"
		}
		return strings.TrimSpace(s + " " + c.args)
	}
	width := len("(none)")
	for _, c := range g.commands {
		width = max(width, len(label(c)))
	}
	if g.def != nil {
		fmt.Fprintf(w, "  %-*s  %s\n", width, "(none)", g.def.summary)
	}
	for _, c := range g.commands {
		fmt.Fprintf(w, "  %-*s  %s\n", width, label(c), c.summary)
	}
	fmt.Fprintf(w, "\nRun 'cocaine-tool %s <command> --help' for a command's options and an example.\n", g.name)
}

// topHelp lists every group and top-level command.
func topHelp(w io.Writer, groups []*group) {
	fmt.Fprint(w, `usage: cocaine-tool <group> <command> [arguments] [options]
       cocaine-tool <command> [arguments] [options]

The operator's CLI of cocaine, compatible with the original cocaine-tool: its commands,
options, JSON output and exit codes (0 success, 22 bad arguments, 128 service error).
It finds every service through the locator: --host/--port, or COCAINE_LOCATOR=host:port,
or 127.0.0.1:10053.
`)
	var gs, cs []*group
	for _, g := range groups {
		if g.single() {
			cs = append(cs, g)
		} else {
			gs = append(gs, g)
		}
	}
	list := func(title string, items []*group) {
		sort.Slice(items, func(i, j int) bool { return items[i].name < items[j].name })
		fmt.Fprintf(w, "\n%s:\n", title)
		for _, g := range items {
			name := g.name
			if len(g.aliases) > 0 {
				name += " (" + strings.Join(g.aliases, ", ") + ")"
			}
			fmt.Fprintf(w, "  %-22s %s\n", name, g.summary)
		}
	}
	list("groups", gs)
	list("commands", cs)
	writeOptions(w, "global options", globalOptions)
	fmt.Fprint(w, "\nRun 'cocaine-tool <group> --help' or 'cocaine-tool <group> <command> --help' for more.\n")
}
