package lint

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/token"
	"slices"
	"strconv"
	"strings"
)

// finding is one violation of a file rule.
type finding struct {
	line int
	msg  string
}

// fileRule is a house rule checked one file at a time.
type fileRule struct {
	name  string
	tests bool                       // also applies to _test.go files
	skip  func(pkgRel string) bool   // packages the rule does not cover; nil: none
	check func(f *srcFile) []finding // the violations in f
}

// maxLines is the longest a Go file may be.
const maxLines = 1000

var fileRules = []fileRule{
	{name: "no-init", skip: underCmd, check: checkInit},
	{name: "no-raw-atomics", tests: true, check: checkAtomics},
	{name: "no-print", check: checkPrint},
	{name: "file-length", tests: true, check: checkLength},
	{name: "chan-size", check: checkChanSize},
}

// checkFile returns the violations of r in f, none when r does not cover f.
func checkFile(r fileRule, f *srcFile) []finding {
	if f.test && !r.tests {
		return nil
	}
	if r.skip != nil && r.skip(f.pkg.rel) {
		return nil
	}
	return r.check(f)
}

func underCmd(rel string) bool { return rel == "cmd" || strings.HasPrefix(rel, "cmd/") }

// checkInit reports func init() outside generated files: registration is
// explicit, in one list (aesthetics.md §8.1), never a side effect of an import.
func checkInit(f *srcFile) []finding {
	if ast.IsGenerated(f.ast) {
		return nil
	}
	var out []finding
	for _, d := range f.ast.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && fd.Name.Name == "init" {
			out = append(out, finding{f.line(fd.Pos()), "func init() outside cmd/...; register explicitly instead"})
		}
	}
	return out
}

// atomicTypes are the only sync/atomic names code may use.
var atomicTypes = []string{"Bool", "Int32", "Int64", "Uint32", "Uint64", "Uintptr", "Pointer", "Value"}

// checkAtomics reports every use of a sync/atomic function (AddInt64,
// LoadUint32, CompareAndSwapPointer, AndInt32, ...): the typed values make
// every access atomic and cannot be copied by accident.
func checkAtomics(f *srcFile) []finding {
	names, dots := importNames(f.ast, "sync/atomic", "atomic")
	var out []finding
	for _, pos := range dots {
		out = append(out, finding{f.line(pos), `dot import of "sync/atomic" hides raw atomic calls`})
	}
	ast.Inspect(f.ast, func(n ast.Node) bool {
		if name, sel, ok := pkgSelector(n, names); ok && !slices.Contains(atomicTypes, sel.Name) {
			out = append(out, finding{f.line(sel.Pos()), fmt.Sprintf(
				"raw atomic %s.%s; use the typed values (atomic.Int64, atomic.Bool, atomic.Pointer[T], ...)", name, sel.Name)})
		}
		return true
	})
	return out
}

// printFuncs are, per import path, the package functions that print to the
// process's stdout or stderr.
var printFuncs = map[string][]string{
	"fmt": {"Print", "Printf", "Println"},
	"log": {"Print", "Printf", "Println", "Fatal", "Fatalf", "Fatalln", "Panic", "Panicf", "Panicln"},
}

// checkPrint reports printing to stdout/stderr outside package main: library
// code logs through an injected *slog.Logger (aesthetics.md §8.6).
func checkPrint(f *srcFile) []finding {
	if f.ast.Name.Name == "main" {
		return nil
	}
	var out []finding
	for _, ip := range []string{"fmt", "log"} {
		names, dots := importNames(f.ast, ip, ip)
		for _, pos := range dots {
			out = append(out, finding{f.line(pos), fmt.Sprintf("dot import of %q hides print calls", ip)})
		}
		ast.Inspect(f.ast, func(n ast.Node) bool {
			if name, sel, ok := pkgSelector(n, names); ok && slices.Contains(printFuncs[ip], sel.Name) {
				out = append(out, finding{f.line(sel.Pos()), fmt.Sprintf(
					"%s.%s in non-main code; log through an injected *slog.Logger or return the text", name, sel.Name)})
			}
			return true
		})
	}
	ast.Inspect(f.ast, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		if id, ok := ast.Unparen(call.Fun).(*ast.Ident); ok && (id.Name == "print" || id.Name == "println") && !declaresTop(f, id.Name) {
			out = append(out, finding{f.line(id.Pos()), fmt.Sprintf("builtin %s in non-main code", id.Name)})
		}
		return true
	})
	slices.SortStableFunc(out, func(a, b finding) int { return a.line - b.line })
	return out
}

// checkLength reports a file longer than maxLines lines.
func checkLength(f *srcFile) []finding {
	n := bytes.Count(f.src, []byte("\n"))
	if len(f.src) > 0 && f.src[len(f.src)-1] != '\n' {
		n++
	}
	if n <= maxLines {
		return nil
	}
	return []finding{{maxLines + 1, fmt.Sprintf("file has %d lines, more than %d; split it", n, maxLines)}}
}

// checkChanSize reports make(chan T, N), N not the literal 0, with no
// comment on its line or alone on the line above: a buffer's size is a
// decision about backpressure and must say why.
func checkChanSize(f *srcFile) []finding {
	sameLine, above := commentLines(f)
	var out []finding
	ast.Inspect(f.ast, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) != 2 {
			return true
		}
		if id, ok := ast.Unparen(call.Fun).(*ast.Ident); !ok || id.Name != "make" || declaresTop(f, "make") {
			return true
		}
		if _, ok := ast.Unparen(call.Args[0]).(*ast.ChanType); !ok || isZeroLiteral(call.Args[1]) {
			return true
		}
		start, end := f.line(call.Pos()), f.line(call.End())
		if above[start-1] {
			return true
		}
		for l := start; l <= end; l++ {
			if sameLine[l] {
				return true
			}
		}
		out = append(out, finding{start, "buffered channel without a comment (same line or line above) explaining its size"})
		return true
	})
	return out
}

// commentLines returns the lines a comment is on, and the lines on which a
// comment that stands alone on its line (no code before it) ends.
func commentLines(f *srcFile) (on, alone map[int]bool) {
	on, alone = map[int]bool{}, map[int]bool{}
	for _, g := range f.ast.Comments {
		for _, c := range g.List {
			start, end := f.fset.Position(c.Pos()), f.line(c.End())
			for l := start.Line; l <= end; l++ {
				on[l] = true
			}
			lineStart := bytes.LastIndexByte(f.src[:start.Offset], '\n') + 1
			if len(bytes.TrimSpace(f.src[lineStart:start.Offset])) == 0 {
				alone[end] = true
			}
		}
	}
	return on, alone
}

// isZeroLiteral reports whether e is an integer literal of value 0 (0, 0x0, 0_0, ...).
func isZeroLiteral(e ast.Expr) bool {
	lit, ok := ast.Unparen(e).(*ast.BasicLit)
	if !ok || lit.Kind != token.INT {
		return false
	}
	v, err := strconv.ParseUint(lit.Value, 0, 64)
	return err == nil && v == 0
}

// importNames returns the names f refers to the package importPath by
// (defaultName unless renamed), and the positions of dot imports of it.
func importNames(f *ast.File, importPath, defaultName string) (names []string, dots []token.Pos) {
	for _, is := range f.Imports {
		if p, err := strconv.Unquote(is.Path.Value); err != nil || p != importPath {
			continue
		}
		switch {
		case is.Name == nil:
			names = append(names, defaultName)
		case is.Name.Name == ".":
			dots = append(dots, is.Pos())
		case is.Name.Name != "_":
			names = append(names, is.Name.Name)
		}
	}
	return names, dots
}

// pkgSelector reports whether n is name.Sel for one of the package names.
func pkgSelector(n ast.Node, names []string) (string, *ast.Ident, bool) {
	sel, ok := n.(*ast.SelectorExpr)
	if !ok {
		return "", nil, false
	}
	id, ok := sel.X.(*ast.Ident)
	if !ok || !slices.Contains(names, id.Name) {
		return "", nil, false
	}
	return id.Name, sel.Sel, true
}

// declaresTop reports whether f's package declares name at package level,
// shadowing the builtin of that name. Only files of f's package name (and
// test-ness, for non-test files) count.
func declaresTop(f *srcFile, name string) bool {
	for _, g := range f.pkg.files {
		if g.ast.Name.Name != f.ast.Name.Name || (g.test && !f.test) {
			continue
		}
		for _, d := range g.ast.Decls {
			if declNames(d, name) {
				return true
			}
		}
	}
	return false
}

// declNames reports whether the top-level declaration d declares name.
func declNames(d ast.Decl, name string) bool {
	switch d := d.(type) {
	case *ast.FuncDecl:
		return d.Recv == nil && d.Name.Name == name
	case *ast.GenDecl:
		for _, s := range d.Specs {
			switch s := s.(type) {
			case *ast.TypeSpec:
				if s.Name.Name == name {
					return true
				}
			case *ast.ValueSpec:
				for _, n := range s.Names {
					if n.Name == name {
						return true
					}
				}
			}
		}
	}
	return false
}

// docViolation is a package without a doc comment.
type docViolation struct {
	file string
	line int
	msg  string
}

// checkPackageDoc reports whether some non-test file of p carries a package
// doc comment. A package with no non-test files has nothing to document.
func checkPackageDoc(p *pkgInfo) (docViolation, bool) {
	var first *srcFile
	for _, f := range p.files {
		if f.test || (p.list.Name != "" && f.ast.Name.Name != p.list.Name) {
			continue
		}
		if f.ast.Doc != nil && strings.TrimSpace(f.ast.Doc.Text()) != "" {
			return docViolation{}, true
		}
		if first == nil {
			first = f
		}
	}
	if first == nil {
		return docViolation{}, true
	}
	return docViolation{
		file: first.name,
		line: first.line(first.ast.Package),
		msg:  fmt.Sprintf("package %s (%s) has no package doc comment; add one, in doc.go if it is long", first.ast.Name.Name, p.dir),
	}, false
}
