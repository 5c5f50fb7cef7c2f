package storage

import (
	"errors"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Sentinel errors. Backends wrap them with the operation and the name it failed on, so
// match them with errors.Is, never by message.
var (
	// ErrNotFound: the key, or its whole collection, does not exist. Read returns it
	// wrapped as "storage: read <collection>/<key>: no such key".
	ErrNotFound = errors.New("storage: no such key")

	// ErrInvalidName: an empty, oversized or NUL-containing collection, key or tag
	// (see Validate).
	ErrInvalidName = errors.New("storage: invalid name")

	// ErrTooLarge: a value over the backend's size limit. The wrapped message gives the
	// value's size and the limit.
	ErrTooLarge = errors.New("storage: value too large")

	// ErrClosed: the backend was closed.
	ErrClosed = errors.New("storage: backend closed")

	// ErrLocked: another process (or another Bolt in this one) holds the data file.
	ErrLocked = errors.New("storage: database is locked by another process")

	// ErrUnsupportedVersion: the data file was written by an incompatible version of the
	// store, or is a bbolt file that is not a store at all; or a replicated command or
	// snapshot is in a format version this build does not read.
	ErrUnsupportedVersion = errors.New("storage: unsupported store version")

	// ErrCorrupt: the data file breaks an invariant of the store's layout; or a
	// replicated command, Apply result or snapshot is malformed; or a blob's bytes do not
	// match its digest.
	ErrCorrupt = errors.New("storage: corrupt store")

	// ErrBlobUnavailable: a value kept in the blob store is on no host that answered: this
	// host has no copy, and no holder could send a good one before the deadline. The
	// wrapped message names the digest and what each holder said. Retrying later may
	// succeed, once a holder is back.
	ErrBlobUnavailable = errors.New("storage: blob unavailable")
)

// opError records the operation and the name it failed on, as fs.PathError does, so
// messages read "storage: read apps/echo: no such key".
type opError struct {
	op   string // "open", "read", "write", "remove", "find", "close", ...
	name string // "<collection>/<key>", "<collection>" or a file path, already displayable
	err  error
}

func (e *opError) Error() string {
	// The sentinels carry the package prefix so they read well alone; the wrapped form
	// already starts with it, so it is not said twice.
	return "storage: " + e.op + " " + e.name + ": " + strings.TrimPrefix(e.err.Error(), "storage: ")
}

func (e *opError) Unwrap() error { return e.err }

// keyName formats collection/key for an error message.
func keyName(collection, key string) string {
	return displayName(collection) + "/" + displayName(key)
}

// maxDisplayName bounds how much of a name goes into an error message: an invalid name
// may be megabytes long, and a message is for a person.
const maxDisplayName = 128

// displayName returns s as it should appear in an error message: as is when it is short
// printable UTF-8 (the usual case, and what the original backend printed), otherwise
// quoted and truncated, because keys are arbitrary bytes and a raw control byte in a log
// line or a terminal does harm.
func displayName(s string) string {
	truncated := false
	if len(s) > maxDisplayName {
		s, truncated = s[:maxDisplayName], true
	}
	if !truncated && utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
		return !unicode.IsPrint(r)
	}) && s != "" {
		return s
	}
	q := strconv.Quote(s)
	if truncated {
		q += "..."
	}
	return q
}
