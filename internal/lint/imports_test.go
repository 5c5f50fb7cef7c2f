package lint

import (
	"fmt"
	"strconv"
	"strings"
)

// Classes of imports, for importRule.only and importRule.never.
const (
	std      = "<std>"      // any package of the standard library
	external = "<external>" // any package neither in the standard library nor in this module
)

// importRule constrains what some of the module's packages may import.
//
// Module patterns are relative to the module path: "rpc" is
// github.com/cocaine/cocaine/rpc, "rpc/..." is rpc and every package below
// it, "*" matches one path element, and "..." alone is every package of the
// module. In only and never, "$1" stands for the element the first "*" of
// from matched, so "services/*/..." with "services/$1/..." means "its own
// subtree". A pattern whose first element has a dot is the import path of
// another module's package ("github.com/vmihailenco/msgpack/v5/..."), and std
// and external stand for whole classes of imports.
type importRule struct {
	name   string
	from   string   // module pattern: the packages the rule governs
	except []string // module patterns: governed packages the rule leaves alone
	tests  bool     // check the test imports (TestImports, XTestImports) instead of Imports
	only   []string // when set, every import must match one of these
	never  []string // no import may match one of these
	why    string
}

// importRules is the import DAG of DESIGN.md ("Import rules") and
// aesthetics.md §8.1. Imports are the direct imports go list reports for the
// build configuration of the test run.
var importRules = []importRule{
	{
		name: "rpc",
		from: "rpc/...",
		only: []string{std, "github.com/vmihailenco/msgpack/v5/...", "rpc/..."},
		why:  "rpc is the wire every other package shares, so it depends on nothing above it",
	},
	{
		name: "raft",
		from: "raft/...",
		only: []string{std, external, "raft/..."},
		why:  "raft replicates opaque commands and knows nothing of the rest of the module",
	},
	{
		name: "frameworks-go",
		from: "frameworks/go/...",
		only: []string{std, "rpc/...", "frameworks/go/..."},
		why:  "applications import the Go framework; it must bring the wire and nothing else",
	},
	{
		name:  "frameworks-go-tests",
		from:  "frameworks/go/...",
		tests: true,
		only:  []string{std, external, "rpc/...", "frameworks/go/..."},
		why:   "the framework's tests exercise it against the wire alone",
	},
	{
		name:   "cmd",
		from:   "...",
		except: []string{"cmd/..."},
		never:  []string{"cmd/..."},
		why:    "commands are leaves: nothing outside cmd/ depends on them",
	},
	{
		name:   "daemon",
		from:   "...",
		except: []string{"internal/daemon/...", "cmd/...", "internal/testcluster/...", "bench/..."},
		never:  []string{"internal/daemon/..."},
		why:    "only commands, the test cluster and benchmarks wire up the whole daemon",
	},
	{
		name:  "services",
		from:  "services/*/...",
		only:  []string{std, external, "rpc/...", "services", "services/$1/...", "internal/..."},
		never: []string{"internal/daemon/..."},
		why:   "a built-in service sees the wire, the Service interface, its own subpackages and internal helpers, never another service or the daemon",
	},
	{
		name: "node",
		from: "node/...",
		only: []string{std, external, "rpc/...", "node/...", "internal/lifecycle"},
		why:  "the app engine sees the wire and its isolates; storage, the locator and logging reach it through consumer-side interfaces that the daemon satisfies",
	},
	{
		name:  "node-isolates",
		from:  "node",
		never: []string{"node/isolate/..."},
		why:   "isolates are registered explicitly: the daemon hands their factories to the node",
	},
	{
		name: "netshape",
		from: "node/netshape/...",
		only: []string{std, external, "node/netshape/..."},
		why:  "traffic shaping drives the kernel's bridge, veths and qdiscs and knows nothing of apps or workers",
	},
	{
		name: "isolates",
		from: "node/isolate/*/...",
		only: []string{std, external, "node", "node/isolate/$1/...", "node/isolate/process", "node/netshape", "internal/lifecycle"},
		why:  "an isolate sees the node's Isolate seam, its own subpackages, the process isolate's CPU classes and the network, never another part of the daemon",
	},
	{
		name: "examples",
		from: "examples/...",
		only: []string{std, "frameworks/go/..."},
		why:  "examples show what an app author writes: the framework and the standard library",
	},
}

// importViolation is one forbidden import.
type importViolation struct {
	file string
	line int
	rule string
	msg  string
}

// checkImports applies importRules to every package. An import that breaks
// several rules is reported once, for the first of them.
func checkImports(modPath string, pkgs []*pkgInfo) []importViolation {
	var out []importViolation
	for _, p := range pkgs {
		reported := map[string]bool{}
		for _, r := range importRules {
			caps, ok := r.governs(p.rel)
			if !ok {
				continue
			}
			imports := p.list.Imports
			if r.tests {
				imports = append(append([]string(nil), p.list.TestImports...), p.list.XTestImports...)
			}
			for _, imp := range imports {
				key := strconv.FormatBool(r.tests) + " " + imp
				if reported[key] {
					continue
				}
				msg, bad := r.judge(modPath, imp, caps)
				if !bad {
					continue
				}
				reported[key] = true
				file, line := importPos(p, imp, r.tests)
				out = append(out, importViolation{
					file: file,
					line: line,
					rule: r.name,
					msg:  fmt.Sprintf("%s imports %s: %s (%s)", display(modPath, p.list.ImportPath), imp, msg, r.why),
				})
			}
		}
	}
	return out
}

// governs reports whether r covers the package at the module-relative path
// rel, and what the "*" elements of r.from matched.
func (r importRule) governs(rel string) ([]string, bool) {
	caps, ok := matchPath(r.from, rel)
	if !ok {
		return nil, false
	}
	for _, e := range r.except {
		if _, ok := matchPath(e, rel); ok {
			return nil, false
		}
	}
	return caps, true
}

// judge reports why the import imp breaks r, if it does.
func (r importRule) judge(modPath, imp string, caps []string) (string, bool) {
	for _, pat := range r.never {
		if matchImport(pat, modPath, imp, caps) {
			return "must never import " + pat, true
		}
	}
	if len(r.only) == 0 {
		return "", false
	}
	for _, pat := range r.only {
		if matchImport(pat, modPath, imp, caps) {
			return "", false
		}
	}
	return fmt.Sprintf("%s may import only %s", r.from, strings.Join(r.only, ", ")), true
}

// matchImport reports whether the import path imp matches pat.
func matchImport(pat, modPath, imp string, caps []string) bool {
	rel, inModule := modRel(modPath, imp)
	isStd := !inModule && !strings.Contains(strings.Split(imp, "/")[0], ".")
	switch {
	case pat == std:
		return isStd
	case pat == external:
		return !inModule && !isStd
	case strings.Contains(strings.Split(pat, "/")[0], "."):
		_, ok := matchPath(pat, imp)
		return !inModule && !isStd && ok
	default:
		for i, c := range caps {
			pat = strings.ReplaceAll(pat, "$"+strconv.Itoa(i+1), c)
		}
		_, ok := matchPath(pat, rel)
		return inModule && ok
	}
}

// matchPath matches a slash-separated path against a pattern: "*" matches
// one element, a final "..." zero or more. It returns what each "*" matched.
// The empty path is the module root; only "..." matches it.
func matchPath(pattern, path string) ([]string, bool) {
	pe := strings.Split(pattern, "/")
	var xe []string
	if path != "" {
		xe = strings.Split(path, "/")
	}
	var caps []string
	for i, p := range pe {
		if p == "..." && i == len(pe)-1 {
			return caps, true
		}
		if i >= len(xe) {
			return nil, false
		}
		switch p {
		case "*":
			caps = append(caps, xe[i])
		case xe[i]:
		default:
			return nil, false
		}
	}
	if len(xe) != len(pe) {
		return nil, false
	}
	return caps, true
}

// importPos finds the import of imp in p's non-test files (test files when
// test is set), for the report; the package's directory when none has it.
func importPos(p *pkgInfo, imp string, test bool) (string, int) {
	for _, f := range p.files {
		if f.test != test {
			continue
		}
		for _, is := range f.ast.Imports {
			if v, err := strconv.Unquote(is.Path.Value); err == nil && v == imp {
				return f.name, f.line(is.Pos())
			}
		}
	}
	return p.dir, 0
}

// display shortens an import path of the module to its module-relative form.
func display(modPath, importPath string) string {
	if rel, ok := modRel(modPath, importPath); ok && rel != "" {
		return rel
	}
	return importPath
}
