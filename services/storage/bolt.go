package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// On-disk layout of a Bolt store (version 1):
//
//	"\x00meta"            store metadata
//	    "version"         uint64 big-endian, storeVersion
//	<collection>          one top-level bucket per non-empty collection
//	    "values"          key -> blob
//	    "tags"            key -> tag list (see appendTags); absent when the key has no tags
//	    "index"           tag -> nested bucket
//	        <tag>         key -> empty; one entry per key carrying the tag
//
// The meta bucket name starts with NUL, which Validate rejects in collection names, so no
// collection can collide with it. Empty buckets are not kept: a tag's index bucket goes
// when its last key loses the tag, and a collection's bucket goes when its last key is
// removed. The index then holds only live tags, Find never walks dead ones, and
// Collections lists only collections that hold something, as the files backend's
// directory listing would after a cleanup.
var (
	metaBucket   = []byte("\x00meta")
	versionKey   = []byte("version")
	valuesBucket = []byte("values")
	tagsBucket   = []byte("tags")
	indexBucket  = []byte("index")
)

// storeVersion is the layout version written to new stores and required of old ones.
// Bump it with any incompatible change to the layout above.
const storeVersion = 1

// DefaultLockTimeout is how long OpenBolt waits for another holder of the data file.
// It is short: the usual holder is a second daemon on the same data directory, which
// will not let go, and the operator is better served by a prompt error than a hang.
const DefaultLockTimeout = time.Second

// BoltOptions configures OpenBolt. The zero value gives the defaults.
type BoltOptions struct {
	// MaxValueSize is the largest blob Write accepts, in bytes; 0 means
	// DefaultMaxValueSize.
	MaxValueSize int

	// LockTimeout bounds the wait for the data file's lock; 0 means DefaultLockTimeout.
	LockTimeout time.Duration
}

// Validate reports every invalid field.
func (o BoltOptions) Validate() error {
	var errs []error
	if o.MaxValueSize < 0 {
		errs = append(errs, fmt.Errorf("storage: MaxValueSize (%d) must not be negative", o.MaxValueSize))
	}
	if o.MaxValueSize > bolt.MaxValueSize {
		errs = append(errs, fmt.Errorf("storage: MaxValueSize (%d) must not exceed bbolt's limit (%d)", o.MaxValueSize, bolt.MaxValueSize))
	}
	if o.LockTimeout < 0 {
		errs = append(errs, fmt.Errorf("storage: LockTimeout (%s) must not be negative", o.LockTimeout))
	}
	return errors.Join(errs...)
}

// Bolt is a Backend kept in a single bbolt file. Every write is one fsynced bbolt
// transaction, so a write that returned survives a crash, and a value and its tags
// always change together. Besides the errors each method lists, any of them can return
// ErrCorrupt when the file breaks the layout described at the top of this file.
type Bolt struct {
	db           *bolt.DB
	path         string
	maxValueSize int
	closed       atomic.Bool
}

var _ Backend = (*Bolt)(nil)

// OpenBolt opens the store at path, creating the file (but not its directory) if needed.
// It returns an error wrapping ErrLocked if another process holds the file for longer than
// opts.LockTimeout, and ErrUnsupportedVersion if the file is not a store of this version.
func OpenBolt(path string, opts BoltOptions) (*Bolt, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.MaxValueSize == 0 {
		opts.MaxValueSize = DefaultMaxValueSize
	}
	if opts.LockTimeout == 0 {
		// bbolt treats 0 as "wait forever", which is the hang this option exists to avoid.
		opts.LockTimeout = DefaultLockTimeout
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: opts.LockTimeout,
		// NoSync stays false: a write acknowledged to a client must survive a crash.
		// The hashmap freelist is etcd's choice too: the array one allocates in time
		// linear in the free pages, and rewriting large app archives frees many.
		FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			err = ErrLocked
		} else if pe, ok := errors.AsType[*fs.PathError](err); ok {
			// The path is already in our message; keep the cause.
			err = pe.Err
		}
		return nil, &opError{op: "open", name: path, err: err}
	}
	if err := checkVersion(db); err != nil {
		db.Close()
		return nil, &opError{op: "open", name: path, err: err}
	}
	return &Bolt{db: db, path: path, maxValueSize: opts.MaxValueSize}, nil
}

// checkVersion stamps a new file with storeVersion, and refuses a file stamped with
// another version or holding buckets without a stamp (a bbolt file from something else).
func checkVersion(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		if meta := tx.Bucket(metaBucket); meta != nil {
			v := meta.Get(versionKey)
			if len(v) != 8 {
				return fmt.Errorf("%w: malformed version marker", ErrUnsupportedVersion)
			}
			if got := binary.BigEndian.Uint64(v); got != storeVersion {
				return fmt.Errorf("%w: found %d, want %d", ErrUnsupportedVersion, got, storeVersion)
			}
			return nil
		}
		if k, _ := tx.Cursor().First(); k != nil {
			return fmt.Errorf("%w: no version marker in a non-empty file", ErrUnsupportedVersion)
		}
		meta, err := tx.CreateBucket(metaBucket)
		if err != nil {
			return err
		}
		return meta.Put(versionKey, binary.BigEndian.AppendUint64(nil, storeVersion))
	})
}

// Path returns the data file's path.
func (b *Bolt) Path() string { return b.path }

// Close closes the data file, waiting for transactions in flight. Later operations return
// ErrClosed; a second Close returns nil.
func (b *Bolt) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	if err := b.db.Close(); err != nil {
		return &opError{op: "close", name: b.path, err: err}
	}
	return nil
}

// Read implements Backend. It returns ErrNotFound, ErrInvalidName, ErrClosed or ctx.Err(),
// wrapped.
func (b *Bolt) Read(ctx context.Context, collection, key string) ([]byte, error) {
	if err := b.begin(ctx, collection, key); err != nil {
		return nil, b.wrap("read", keyName(collection, key), err)
	}
	var value []byte
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(collection))
		if c == nil {
			return ErrNotFound
		}
		values := c.Bucket(valuesBucket)
		if values == nil {
			return fmt.Errorf("%w: collection without %q bucket", ErrCorrupt, valuesBucket)
		}
		v, ok := get(values, []byte(key))
		if !ok {
			return ErrNotFound
		}
		// bbolt's slice points into the mmap and dies with the transaction.
		value = bytes.Clone(v)
		if value == nil {
			value = []byte{}
		}
		return nil
	})
	if err != nil {
		return nil, b.wrap("read", keyName(collection, key), err)
	}
	return value, nil
}

// Write implements Backend. It returns ErrInvalidName, ErrTooLarge, ErrClosed or
// ctx.Err(), wrapped.
func (b *Bolt) Write(ctx context.Context, collection, key string, value []byte, tags []string) error {
	name := keyName(collection, key)
	if err := b.begin(ctx, collection, key); err != nil {
		return b.wrap("write", name, err)
	}
	if err := ValidateTags(tags); err != nil {
		return b.wrap("write", name, err)
	}
	if err := checkValueSize(value, b.maxValueSize); err != nil {
		return b.wrap("write", name, err)
	}
	tags = normalizeTags(tags)
	k := []byte(key)
	err := b.db.Update(func(tx *bolt.Tx) error {
		// Writers queue for bbolt's single writer lock; one whose caller gave up while
		// it waited should not apply.
		if err := ctx.Err(); err != nil {
			return err
		}
		c, err := tx.CreateBucketIfNotExists([]byte(collection))
		if err != nil {
			return err
		}
		values, tagsB, index, err := createSubBuckets(c)
		if err != nil {
			return err
		}
		old, err := decodeTags(tagsB.Get(k))
		if err != nil {
			return err
		}
		// Both lists are sorted: drop the index entries of tags not kept, add the new.
		for _, tag := range old {
			if _, keep := slices.BinarySearch(tags, tag); keep {
				continue
			}
			if err := unindex(index, []byte(tag), k); err != nil {
				return err
			}
		}
		for _, tag := range tags {
			ib, err := index.CreateBucketIfNotExists([]byte(tag))
			if err != nil {
				return err
			}
			if err := ib.Put(k, nil); err != nil {
				return err
			}
		}
		if len(tags) == 0 {
			if err := tagsB.Delete(k); err != nil {
				return err
			}
		} else if err := tagsB.Put(k, appendTags(nil, tags)); err != nil {
			return err
		}
		// bbolt keeps value, not a copy, until commit; Update commits before it returns,
		// so the caller's slice is free again once Write returns.
		return values.Put(k, value)
	})
	if err != nil {
		return b.wrap("write", name, err)
	}
	return nil
}

// Remove implements Backend. It returns ErrInvalidName, ErrClosed or ctx.Err(), wrapped;
// a missing key is not an error.
func (b *Bolt) Remove(ctx context.Context, collection, key string) error {
	name := keyName(collection, key)
	if err := b.begin(ctx, collection, key); err != nil {
		return b.wrap("remove", name, err)
	}
	k := []byte(key)
	err := b.db.Update(func(tx *bolt.Tx) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		c := tx.Bucket([]byte(collection))
		if c == nil {
			return nil
		}
		values, tagsB, index := c.Bucket(valuesBucket), c.Bucket(tagsBucket), c.Bucket(indexBucket)
		if values == nil || tagsB == nil || index == nil {
			return fmt.Errorf("%w: collection without its sub-buckets", ErrCorrupt)
		}
		old, err := decodeTags(tagsB.Get(k))
		if err != nil {
			return err
		}
		for _, tag := range old {
			if err := unindex(index, []byte(tag), k); err != nil {
				return err
			}
		}
		if err := tagsB.Delete(k); err != nil {
			return err
		}
		if err := values.Delete(k); err != nil {
			return err
		}
		if first, _ := values.Cursor().First(); first == nil {
			// The last key is gone; tags and index are empty with it.
			return tx.DeleteBucket([]byte(collection))
		}
		return nil
	})
	if err != nil {
		return b.wrap("remove", name, err)
	}
	return nil
}

// Find implements Backend. It returns ErrInvalidName (for the collection), ErrClosed or
// ctx.Err(), wrapped. A tag that could never be written (empty, too long, with NUL) is
// unknown, so it gives an empty result rather than an error.
func (b *Bolt) Find(ctx context.Context, collection string, tags []string) ([]string, error) {
	if err := b.beginCollection(ctx, collection); err != nil {
		return nil, b.wrap("find", displayName(collection), err)
	}
	keys := []string{}
	if len(tags) == 0 {
		return keys, nil
	}
	tags = normalizeTags(tags)
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(collection))
		if c == nil {
			return nil
		}
		index := c.Bucket(indexBucket)
		if index == nil {
			return fmt.Errorf("%w: collection without %q bucket", ErrCorrupt, indexBucket)
		}
		cursors := make([]*bolt.Cursor, len(tags))
		for i, tag := range tags {
			ib := index.Bucket([]byte(tag))
			if ib == nil {
				return nil // unknown tag: nothing carries it
			}
			cursors[i] = ib.Cursor()
		}
		keys = intersect(cursors, keys)
		return nil
	})
	if err != nil {
		return nil, b.wrap("find", displayName(collection), err)
	}
	return keys, nil
}

// intersect appends to dst the keys present in every cursor's bucket, in order. It is a
// leapfrog join: each cursor seeks straight to the largest key seen so far, so a rare tag
// intersected with a common one costs about the rare tag's size in seeks, not a scan of
// the common one.
func intersect(cursors []*bolt.Cursor, dst []string) []string {
	k, _ := cursors[0].First()
	for k != nil {
		matched := true
		for _, c := range cursors[1:] {
			got, _ := c.Seek(k)
			if got == nil {
				return dst // this tag has no keys at or past k
			}
			if !bytes.Equal(got, k) {
				// got > k: no key below got can be in this tag, skip the lead cursor there.
				k, _ = cursors[0].Seek(got)
				matched = false
				break
			}
		}
		if matched {
			dst = append(dst, string(k))
			k, _ = cursors[0].Next()
		}
	}
	return dst
}

// Collections returns the names of the collections holding at least one key, sorted. It
// is meant for tests and tools, not for the service.
func (b *Bolt) Collections() ([]string, error) {
	if b.closed.Load() {
		return nil, b.wrap("list", b.path, ErrClosed)
	}
	names := []string{}
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			if !bytes.Equal(name, metaBucket) {
				names = append(names, string(name))
			}
			return nil
		})
	})
	if err != nil {
		return nil, b.wrap("list", b.path, err)
	}
	return names, nil
}

// Keys returns the keys of collection, sorted; an unknown collection has none. It is
// meant for tests and tools, not for the service.
func (b *Bolt) Keys(collection string) ([]string, error) {
	if err := b.beginCollection(context.Background(), collection); err != nil {
		return nil, b.wrap("list", displayName(collection), err)
	}
	keys := []string{}
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(collection))
		if c == nil {
			return nil
		}
		values := c.Bucket(valuesBucket)
		if values == nil {
			return fmt.Errorf("%w: collection without %q bucket", ErrCorrupt, valuesBucket)
		}
		return values.ForEach(func(k, _ []byte) error {
			keys = append(keys, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, b.wrap("list", displayName(collection), err)
	}
	return keys, nil
}

// begin runs the checks every keyed operation makes before it starts a transaction.
func (b *Bolt) begin(ctx context.Context, collection, key string) error {
	if err := b.beginCollection(ctx, collection); err != nil {
		return err
	}
	return validateName("key", key)
}

// beginCollection is begin for operations on a whole collection.
func (b *Bolt) beginCollection(ctx context.Context, collection string) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return validateName("collection", collection)
}

// wrap adds the operation and name to err. A transaction that raced with Close fails
// with bbolt's own error, which callers should see as ErrClosed.
func (b *Bolt) wrap(op, name string, err error) error {
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		err = ErrClosed
	}
	return &opError{op: op, name: name, err: err}
}

// createSubBuckets returns the values, tags and index buckets of collection bucket c,
// creating them in a new collection.
func createSubBuckets(c *bolt.Bucket) (values, tags, index *bolt.Bucket, err error) {
	if values, err = c.CreateBucketIfNotExists(valuesBucket); err != nil {
		return nil, nil, nil, err
	}
	if tags, err = c.CreateBucketIfNotExists(tagsBucket); err != nil {
		return nil, nil, nil, err
	}
	if index, err = c.CreateBucketIfNotExists(indexBucket); err != nil {
		return nil, nil, nil, err
	}
	return values, tags, index, nil
}

// unindex removes key from tag's index bucket, and the bucket itself once it is empty.
func unindex(index *bolt.Bucket, tag, key []byte) error {
	ib := index.Bucket(tag)
	if ib == nil {
		return fmt.Errorf("%w: tag %q listed for a key but not indexed", ErrCorrupt, tag)
	}
	if err := ib.Delete(key); err != nil {
		return err
	}
	if first, _ := ib.Cursor().First(); first == nil {
		return index.DeleteBucket(tag)
	}
	return nil
}

// get returns the value of key in b and whether it exists. bbolt's Get alone cannot tell
// a missing key from an empty value, and empty blobs are legitimate.
func get(b *bolt.Bucket, key []byte) ([]byte, bool) {
	k, v := b.Cursor().Seek(key)
	if k == nil || !bytes.Equal(k, key) || v == nil && b.Bucket(key) != nil {
		return nil, false
	}
	return v, true
}

// appendTags encodes a tag list as, per tag, its length as a uvarint followed by its
// bytes. Tags may hold any byte but NUL, so a separator would need escaping; a length
// prefix does not.
func appendTags(dst []byte, tags []string) []byte {
	for _, tag := range tags {
		dst = binary.AppendUvarint(dst, uint64(len(tag)))
		dst = append(dst, tag...)
	}
	return dst
}

// decodeTags decodes what appendTags wrote; nil decodes to no tags.
func decodeTags(b []byte) ([]string, error) {
	var tags []string
	for len(b) > 0 {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			return nil, fmt.Errorf("%w: malformed tag list", ErrCorrupt)
		}
		b = b[w:]
		tags = append(tags, string(b[:n]))
		b = b[n:]
	}
	return tags, nil
}
