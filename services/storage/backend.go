package storage

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Limits shared by every Backend, so that a blob written through one implementation can be
// moved to another (the Raft-replicated store replays what the bolt store accepted).
const (
	// MaxNameSize bounds collections, keys and tags, in bytes. The original files backend
	// used them as path components, so real names are short; the bound keeps a hostile
	// name from becoming a 32 KiB bbolt key or a huge index entry.
	MaxNameSize = 1024

	// MaxTags bounds the tags of one key. cocaine-tool writes at most three; the bound keeps
	// one write from touching an unbounded number of index buckets.
	MaxTags = 256

	// DefaultMaxValueSize is the blob limit when a backend is not told otherwise. App
	// archives (collection "apps") are the largest blobs cocaine-tool writes.
	DefaultMaxValueSize = 64 << 20
)

// Backend stores blobs by (collection, key) with tags. Implementations are safe for
// concurrent use.
//
// Every method checks ctx before it starts; an operation that returns an error has not
// been applied. Errors wrap the package sentinels (ErrNotFound, ErrInvalidName,
// ErrTooLarge, ErrClosed) or ctx.Err(), so callers test them with errors.Is.
type Backend interface {
	// Read returns the blob stored under collection/key. The slice belongs to the caller.
	// It returns ErrNotFound if the key (or the whole collection) is absent.
	Read(ctx context.Context, collection, key string) ([]byte, error)

	// Write stores value under collection/key, replacing both the previous value and the
	// previous tags: a key carries exactly the tags of its last write. Duplicate tags are
	// folded. The backend does not keep value after Write returns.
	// It returns ErrInvalidName for a bad collection, key or tag, ErrTooLarge for a
	// value over the backend's limit.
	Write(ctx context.Context, collection, key string, value []byte, tags []string) error

	// Remove deletes collection/key and its tags. Removing a missing key succeeds, as
	// with the original files backend; cocaine-tool relies on it when it removes an app
	// whose archive was never uploaded.
	Remove(ctx context.Context, collection, key string) error

	// Find returns, sorted bytewise, the keys of collection that carry all of tags. An
	// empty tag list, an unknown tag or an unknown collection gives an empty result, not
	// an error. The result is never nil on success, so it encodes as [] on the wire.
	Find(ctx context.Context, collection string, tags []string) ([]string, error)

	// Close releases the backend. Later calls return ErrClosed. Close is idempotent.
	Close() error
}

// Validate reports whether collection and key are acceptable names: non-empty, at most
// MaxNameSize bytes, and free of NUL bytes. Any other byte is allowed, including invalid
// UTF-8, because msgpack raw strings are bytes. The error wraps ErrInvalidName.
func Validate(collection, key string) error {
	if err := validateName("collection", collection); err != nil {
		return err
	}
	return validateName("key", key)
}

// ValidateTags applies the name rules of Validate to each tag and checks there are at most
// MaxTags distinct ones. The error wraps ErrInvalidName.
func ValidateTags(tags []string) error {
	for _, tag := range tags {
		if err := validateName("tag", tag); err != nil {
			return err
		}
	}
	// Count distinct tags only when the cheap check fails, so the common case allocates
	// nothing.
	if len(tags) > MaxTags {
		if n := len(normalizeTags(tags)); n > MaxTags {
			return fmt.Errorf("%w: %d tags, the limit is %d", ErrInvalidName, n, MaxTags)
		}
	}
	return nil
}

// validateName checks one collection, key or tag; kind names it in the error.
func validateName(kind, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty %s", ErrInvalidName, kind)
	case len(name) > MaxNameSize:
		return fmt.Errorf("%w: %s is %d bytes, the limit is %d", ErrInvalidName, kind, len(name), MaxNameSize)
	case strings.IndexByte(name, 0) >= 0:
		// NUL could never appear in a files-backend path, and the bolt store reserves it
		// for its own top-level buckets.
		return fmt.Errorf("%w: %s contains a NUL byte", ErrInvalidName, kind)
	}
	return nil
}

// checkValueSize returns ErrTooLarge, with both sizes, if value exceeds limit bytes.
func checkValueSize(value []byte, limit int) error {
	if len(value) > limit {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(value), limit)
	}
	return nil
}

// normalizeTags returns tags sorted bytewise with duplicates removed, in a new slice so
// the caller's slice is left alone.
func normalizeTags(tags []string) []string {
	out := slices.Clone(tags)
	slices.Sort(out)
	return slices.Compact(out)
}
