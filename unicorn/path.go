package unicorn

import (
	"strconv"
	"strings"
)

// MaxPathLength bounds a path in bytes, the sequence suffix of a sequential node
// included. ZooKeeper has no fixed bound but its packets are limited; 4 KiB leaves room
// for deep trees and keeps every command and event small.
const MaxPathLength = 4096

// sequenceDigits is the width of the counter appended to a sequential node's name, as
// ZooKeeper's "%010d".
const sequenceDigits = 10

// maxSequence is the largest sequence number that fits the width: beyond it names would
// no longer sort in creation order, so creating more sequential children fails.
const maxSequence = 9_999_999_999

// ValidatePath reports whether p is a valid node path: non-empty, starting with '/', not
// "/" itself, without empty components ("//"), a trailing '/', "." or ".." components or
// NUL bytes, and at most MaxPathLength bytes long. The error wraps ErrInvalidPath.
func ValidatePath(p string) error {
	switch {
	case p == "":
		return errorf(ErrInvalidPath, "empty path")
	case p == "/":
		return errorf(ErrInvalidPath, "root path is not allowed")
	case p[0] != '/':
		return errorf(ErrInvalidPath, "path %s does not start with '/'", quote(p))
	case len(p) > MaxPathLength:
		return errorf(ErrInvalidPath, "path of %d bytes exceeds the limit of %d bytes", len(p), MaxPathLength)
	case strings.IndexByte(p, 0) >= 0:
		return errorf(ErrInvalidPath, "path %s contains a NUL byte", quote(p))
	case p[len(p)-1] == '/':
		return errorf(ErrInvalidPath, "path %s ends with '/'", quote(p))
	}
	for rest := p[1:]; ; {
		comp, tail, more := strings.Cut(rest, "/")
		switch comp {
		case "":
			return errorf(ErrInvalidPath, "path %s has an empty component", quote(p))
		case ".", "..":
			return errorf(ErrInvalidPath, "path %s has a %q component", quote(p), comp)
		}
		if !more {
			return nil
		}
		rest = tail
	}
}

// parentOf returns the parent of a valid path: "/" for a top-level node.
func parentOf(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// baseOf returns the last component of a valid path.
func baseOf(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

// childPath joins a parent ("/" or a valid path) and a name.
func childPath(parent, name string) string {
	if parent == "/" {
		return "/" + name
	}
	return parent + "/" + name
}

// sequenceName returns p with the counter seq appended, zero-padded as ZooKeeper does.
func sequenceName(p string, seq int64) string {
	s := strconv.FormatInt(seq, 10)
	return p + strings.Repeat("0", max(0, sequenceDigits-len(s))) + s
}

// isSequenceName reports whether name ends with a sequenceDigits-digit counter after
// prefix.
func isSequenceName(name, prefix string) bool {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok || len(rest) != sequenceDigits {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if rest[i] < '0' || rest[i] > '9' {
			return false
		}
	}
	return true
}

// maxQuoted bounds how much of a path goes into an error message.
const maxQuoted = 256

// quote formats a path for an error message: quoted, and cut when very long (a hostile
// path may be megabytes long, and messages are for people).
func quote(p string) string {
	if len(p) > maxQuoted {
		return strconv.Quote(p[:maxQuoted]) + "..."
	}
	return strconv.Quote(p)
}
