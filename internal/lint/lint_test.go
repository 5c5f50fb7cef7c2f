package lint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestHouseRules checks every package of the module against the house rules
// and reports each violation, as file:line and rule, with its own t.Errorf.
func TestHouseRules(t *testing.T) {
	root := moduleRoot(t)
	listed := goList(t, root)
	mod, err := loadModule(root, listed)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range mod.errs {
		t.Errorf("%v", e) // files that do not parse cannot be checked
	}

	for _, r := range fileRules {
		t.Run(r.name, func(t *testing.T) {
			for _, p := range mod.pkgs {
				for _, f := range p.files {
					for _, v := range checkFile(r, f) {
						t.Errorf("%s:%d: %s: %s", f.name, v.line, r.name, v.msg)
					}
				}
			}
		})
	}
	t.Run("package-doc", func(t *testing.T) {
		for _, p := range mod.pkgs {
			if v, ok := checkPackageDoc(p); !ok {
				t.Errorf("%s:%d: package-doc: %s", v.file, v.line, v.msg)
			}
		}
	})
	t.Run("imports", func(t *testing.T) {
		for _, v := range checkImports(mod.path, mod.pkgs) {
			t.Errorf("%s:%d: imports/%s: %s", v.file, v.line, v.rule, v.msg)
		}
	})
}

// listedPackage is the part of `go list -json` output the rules need.
type listedPackage struct {
	Dir        string
	ImportPath string
	Name       string
	Module     *struct{ Path string }
	Error      *struct{ Err string }

	GoFiles        []string
	CgoFiles       []string
	IgnoredGoFiles []string // excluded by build constraints here; checked all the same
	TestGoFiles    []string
	XTestGoFiles   []string

	Imports      []string
	TestImports  []string
	XTestImports []string
}

// module is the loaded module: every package with its parsed files.
type module struct {
	path string // module path, from go.mod
	pkgs []*pkgInfo
	errs []error // files that could not be read or parsed, packages go list could not load
}

// pkgInfo is one package of the module.
type pkgInfo struct {
	rel   string // import path relative to the module path; "" for the module root
	dir   string // directory relative to the module root, slash-separated; "." for the root
	list  listedPackage
	files []*srcFile
}

// srcFile is one parsed Go file.
type srcFile struct {
	name string // path relative to the module root, slash-separated
	test bool   // a _test.go file
	src  []byte
	fset *token.FileSet
	ast  *ast.File
	pkg  *pkgInfo
}

// line returns the line of pos in f.
func (f *srcFile) line(pos token.Pos) int { return f.fset.Position(pos).Line }

// moduleRoot walks up from the working directory to the directory holding go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod in the working directory or any parent")
		}
		dir = parent
	}
}

// goList runs `go list -e -json ./...` in root. With -e, a package that
// cannot be loaded is still listed, with its Error set, and the rest of the
// module is checked; a failure of go list itself fails the test.
func goList(t *testing.T, root string) []listedPackage {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is not on PATH (%v); cannot list the module's packages", err)
	}
	cmd := exec.Command(goCmd, "list", "-e", "-json", "./...")
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list -e -json ./... in %s: %v\n%s", root, err, stderr.Bytes())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(&stdout)
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatalf("go list ./... in %s listed no packages\n%s", root, stderr.Bytes())
	}
	return pkgs
}

// loadModule parses every Go file of every listed package, skipping
// testdata directories (go list skips them too; this is belt and braces).
func loadModule(root string, listed []listedPackage) (*module, error) {
	m := &module{}
	for _, lp := range listed {
		if lp.Module == nil {
			return nil, fmt.Errorf("go list: package %s is in no module", lp.ImportPath)
		}
		if m.path == "" {
			m.path = lp.Module.Path
		} else if m.path != lp.Module.Path {
			return nil, fmt.Errorf("go list: packages of two modules, %s and %s", m.path, lp.Module.Path)
		}
		dir, err := filepath.Rel(root, lp.Dir)
		if err != nil {
			return nil, err
		}
		dir = filepath.ToSlash(dir)
		if slices.Contains(strings.Split(dir, "/"), "testdata") {
			continue
		}
		rel, _ := modRel(m.path, lp.ImportPath)
		p := &pkgInfo{rel: rel, dir: dir, list: lp}
		if lp.Error != nil {
			m.errs = append(m.errs, fmt.Errorf("%s: go list: %s", dir, lp.Error.Err))
		}
		fset := token.NewFileSet()
		for _, name := range slices.Concat(lp.GoFiles, lp.CgoFiles, lp.IgnoredGoFiles, lp.TestGoFiles, lp.XTestGoFiles) {
			if !strings.HasSuffix(name, ".go") {
				continue
			}
			f, err := parseFile(fset, p, filepath.Join(lp.Dir, name), slashJoin(dir, name), nil)
			if err != nil {
				m.errs = append(m.errs, err)
				continue
			}
			p.files = append(p.files, f)
		}
		m.pkgs = append(m.pkgs, p)
	}
	return m, nil
}

// parseFile parses the file at filename (or src, when not nil) into p.
// name is the path shown in reports.
func parseFile(fset *token.FileSet, p *pkgInfo, filename, name string, src []byte) (*srcFile, error) {
	if src == nil {
		var err error
		if src, err = os.ReadFile(filename); err != nil {
			return nil, err
		}
	}
	af, err := parser.ParseFile(fset, filename, src, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		return nil, fmt.Errorf("%s: does not parse, so no rule could check it: %v", name, err)
	}
	return &srcFile{
		name: name,
		test: strings.HasSuffix(name, "_test.go"),
		src:  src,
		fset: fset,
		ast:  af,
		pkg:  p,
	}, nil
}

// modRel returns importPath relative to the module path modPath, "" for
// the module root, and ok false for a package outside the module.
func modRel(modPath, importPath string) (string, bool) {
	if importPath == modPath {
		return "", true
	}
	if rest, ok := strings.CutPrefix(importPath, modPath+"/"); ok {
		return rest, true
	}
	return "", false
}

// slashJoin joins a slash-separated directory and a file name.
func slashJoin(dir, name string) string {
	if dir == "." || dir == "" {
		return name
	}
	return dir + "/" + name
}
