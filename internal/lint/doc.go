// Package lint holds the repository's house rules as tests.
//
// The package has no code of its own. Its tests load every package of the
// module with `go list -json ./...`, parse the files with go/parser and check
// the rules of spec/aesthetics.md §8.1 and §8.7, so that `go test ./...` keeps
// them true:
//
//   - package-doc: every package has a package doc comment in one of its
//     non-test files.
//   - imports: the import DAG of DESIGN.md ("Import rules") holds. The rules
//     are a table (importRules in imports_test.go); add a row to add a rule.
//   - no-init: no func init() outside cmd/... (generated files excepted).
//   - no-raw-atomics: no sync/atomic functions (atomic.AddInt64 and friends),
//     tests included; use the atomic.Int64-style types.
//   - no-print: no fmt.Print*, log.Print*, log.Fatal*, log.Panic* or the
//     print/println builtins outside package main and tests; log through an
//     injected *slog.Logger.
//   - file-length: no Go file, tests included, longer than 1,000 lines.
//   - chan-size: every buffered channel, make(chan T, N) with N other than
//     the literal 0, has a comment on its line or the line above saying why
//     it has that size.
//
// Every checker also runs against small in-memory fixtures that break its
// rule, so a checker that stops detecting anything fails the tests instead of
// silently passing.
package lint
