package storage

import (
	"errors"
	"fmt"
	"io"

	"github.com/cocaine/cocaine/rpc"
)

// The replicated formats. Everything is MessagePack as rpc writes it: strings and values
// are raws, integers take their smallest encoding. Decoders accept any encoding
// rpc.Decoder does (str8, bin, wider integers), but nothing else: a command or snapshot
// that breaks a rule below is rejected whole.
//
// A command is one array whose first element is the command version:
//
//	write:       [1, 1, collection, key, value, [tag, ...]]
//	remove:      [1, 2, collection, key]
//	write blob:  [2, 3, collection, key, digest, size, [holder, ...], [tag, ...]]
//	hold:        [2, 4, holder, [digest, ...]]
//
//	holder:      [host, [[ip, port], ...]]
//
// Version 2 adds the blob operations to version 1, whose two operations keep their
// version-1 encoding, so that replicas of an older build still apply them. Collections,
// keys and tags follow Validate. The tags of a write are sorted bytewise and unique (the
// proposer normalizes them), at most MaxTags; a value is at most MaxReplicatedValueSize
// bytes.
//
// A write blob stores a reference instead of the value: the SHA-256 digest (a raw of 32
// bytes) and size (at most MaxBlobSizeLimit) of a value kept in the hosts' blob stores,
// and the hosts known to hold it, 1 to MaxBlobHolders of them, sorted by host and unique.
// A hold records that one host holds the listed blobs (1 to maxHoldDigests digests,
// sorted and unique) at its endpoints, replacing the endpoints it had; digests no key
// refers to any more are skipped. A host is a name as Validate checks it (the daemon uses
// the node's uuid); its 1 to maxHolderEndpoints endpoints are its storage service's
// addresses, each a literal IP and a port from 1 to 65535.
//
// A decoder that meets another version rejects the command with ErrUnsupportedVersion,
// so a build must not propose a new version before every replica can apply it: version 2
// is proposed only for values over the inline limit, which older builds refused.
//
// Apply's result is an array: [] when the command was applied, [code, message] when it
// was rejected and changed nothing. The codes are in resultCodes.
//
// A snapshot is a stream of arrays, one record after another:
//
//	header:      ["cocaine-storage", 1, collections]           no blob references
//	             ["cocaine-storage", 2, collections, blobs]
//	collection:  [name, keys]                 keys >= 1, then that many entries
//	entry:       [key, value, [tag, ...]]                  an inline value
//	             [key, digest, size, [tag, ...]]           a blob reference (version 2)
//	blob:        [digest, size, [holder, ...]]             version 2, after the collections
//
// Collections come in strictly ascending bytewise order, as do the keys of a collection,
// the tags of an entry, the blob records (by digest) and the holders of a blob (by host),
// so a state has exactly one snapshot and two replicas with the same data write the same
// bytes. A state without blobs is written in version 1, which older builds restore. Each
// blob record is referred to by at least one entry, with the same size, and every
// referenced digest has a record. The stream ends after the last record.

// The command versions: commandVersion for write and remove, blobCommandVersion for the
// blob operations (and the most a decoder accepts).
const (
	commandVersion     = 1
	blobCommandVersion = 2
)

// The command operations.
const (
	opWrite     = 1
	opRemove    = 2
	opWriteBlob = 3 // version 2
	opHold      = 4 // version 2
)

// snapshotMagic opens every snapshot, so that the bytes of another FSM are refused
// rather than misread.
const snapshotMagic = "cocaine-storage"

// The versions of the snapshot stream above: snapshotVersion without blobs,
// blobSnapshotVersion with them.
const (
	snapshotVersion     = 1
	blobSnapshotVersion = 2
)

// maxSnapshotRecord bounds one snapshot record: an entry with the largest key, value and
// tag list, each raw under the widest header. A hostile length prefix is refused at this
// bound before anything of its size is allocated.
const maxSnapshotRecord = 16 + 2*(5+MaxNameSize) + (5 + MaxReplicatedValueSize) + MaxTags*(5+MaxNameSize)

// The rejection codes of Apply results. They are part of the format: never renumber them.
const (
	resultInvalidName        = 1
	resultTooLarge           = 2
	resultUnsupportedVersion = 3
	resultCorrupt            = 4 // a malformed command, or any error outside this table
)

// resultCodes map the rejection codes to the sentinels the proposer sees.
var resultCodes = []struct {
	code uint64
	err  error
}{
	{resultInvalidName, ErrInvalidName},
	{resultTooLarge, ErrTooLarge},
	{resultUnsupportedVersion, ErrUnsupportedVersion},
	{resultCorrupt, ErrCorrupt},
}

// command is a decoded command.
type command struct {
	op              uint64 // opWrite, opRemove, opWriteBlob or opHold
	collection, key string
	value           []byte   // opWrite only; aliases the encoded command
	tags            []string // opWrite and opWriteBlob; sorted, unique, nil for none
	blob            blobRef  // opWriteBlob only
	holders         []holder // opWriteBlob: sorted by host, unique; opHold: exactly one
	digests         []Digest // opHold only; sorted, unique
}

// appendWriteCommand appends the write command of collection/key. tags must be normalized
// (see normalizeTags).
func appendWriteCommand(b []byte, collection, key string, value []byte, tags []string) []byte {
	size := 3 + 5 + len(collection) + 5 + len(key) + 5 + len(value) + 3
	for _, t := range tags {
		size += 5 + len(t)
	}
	b = growBytes(b, size)
	b = rpc.AppendArrayHeader(b, 6)
	b = rpc.AppendUint(b, commandVersion)
	b = rpc.AppendUint(b, opWrite)
	b = rpc.AppendString(b, collection)
	b = rpc.AppendString(b, key)
	b = rpc.AppendBytes(b, value)
	return appendTagList(b, tags)
}

// appendRemoveCommand appends the remove command of collection/key.
func appendRemoveCommand(b []byte, collection, key string) []byte {
	b = rpc.AppendArrayHeader(b, 4)
	b = rpc.AppendUint(b, commandVersion)
	b = rpc.AppendUint(b, opRemove)
	b = rpc.AppendString(b, collection)
	return rpc.AppendString(b, key)
}

// appendTagList appends tags as an array of raws.
func appendTagList(b []byte, tags []string) []byte {
	b = rpc.AppendArrayHeader(b, len(tags))
	for _, t := range tags {
		b = rpc.AppendString(b, t)
	}
	return b
}

// growBytes returns b with room for n more bytes.
func growBytes(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		b = nb
	}
	return b
}

// decodeCommand decodes and checks a command. Its errors wrap ErrUnsupportedVersion,
// ErrInvalidName, ErrTooLarge or ErrCorrupt (anything malformed).
func decodeCommand(b []byte) (command, error) {
	var c command
	d := rpc.NewDecoder(b)
	n, err := d.ArrayLen()
	if err != nil {
		return c, malformed("command", err)
	}
	if n < 2 {
		return c, fmt.Errorf("%w: malformed command: %d elements", ErrCorrupt, n)
	}
	version, err := d.Uint()
	if err != nil {
		return c, malformed("command version", err)
	}
	if version != commandVersion && version != blobCommandVersion {
		return c, fmt.Errorf("%w: command version %d, this build applies %d and %d",
			ErrUnsupportedVersion, version, commandVersion, blobCommandVersion)
	}
	if c.op, err = d.Uint(); err != nil {
		return c, malformed("command operation", err)
	}
	var want int
	switch c.op {
	case opWrite:
		want = 6
	case opRemove, opHold:
		want = 4
	case opWriteBlob:
		want = 8
	default:
		return c, fmt.Errorf("%w: malformed command: unknown operation %d", ErrCorrupt, c.op)
	}
	if (c.op == opWriteBlob || c.op == opHold) && version < blobCommandVersion {
		return c, fmt.Errorf("%w: malformed command: operation %d needs command version %d", ErrCorrupt, c.op, blobCommandVersion)
	}
	if n != want {
		return c, fmt.Errorf("%w: malformed command: operation %d with %d elements, want %d", ErrCorrupt, c.op, n, want)
	}
	if c.op == opHold {
		if err := decodeHold(d, &c); err != nil {
			return c, err
		}
	} else if err := decodeKeyCommand(d, &c); err != nil {
		return c, err
	}
	if d.Remaining() != 0 {
		return c, fmt.Errorf("%w: malformed command: %d bytes after it", ErrCorrupt, d.Remaining())
	}
	return c, nil
}

// decodeKeyCommand reads the rest of a write, remove or write blob: the operations on a
// key.
func decodeKeyCommand(d *rpc.Decoder, c *command) error {
	var err error
	if c.collection, err = decodeName(d, "collection"); err != nil {
		return err
	}
	if c.key, err = decodeName(d, "key"); err != nil {
		return err
	}
	switch c.op {
	case opWrite:
		if c.value, err = d.Bytes(); err != nil {
			return malformed("value", err)
		}
		if err := checkValueSize(c.value, MaxReplicatedValueSize); err != nil {
			return err
		}
	case opWriteBlob:
		if c.blob, err = decodeBlobRef(d); err != nil {
			return err
		}
		if c.holders, err = decodeHolders(d); err != nil {
			return err
		}
		if len(c.holders) == 0 {
			return fmt.Errorf("%w: malformed command: a blob without holders", ErrCorrupt)
		}
	}
	if c.op != opRemove {
		if c.tags, err = decodeTagList(d); err != nil {
			return err
		}
	}
	return nil
}

// decodeName reads a collection, key or tag (kind names it) and checks it with
// validateName.
func decodeName(d *rpc.Decoder, kind string) (string, error) {
	s, err := d.String()
	if err != nil {
		return "", malformed(kind, err)
	}
	if err := validateName(kind, s); err != nil {
		return "", err
	}
	return s, nil
}

// decodeTagList reads a tag list: at most MaxTags valid names in strictly ascending
// order. No tags decode to nil.
func decodeTagList(d *rpc.Decoder) ([]string, error) {
	n, err := d.ArrayLen()
	if err != nil {
		return nil, malformed("tag list", err)
	}
	if n > MaxTags {
		return nil, fmt.Errorf("%w: %d tags, the limit is %d", ErrInvalidName, n, MaxTags)
	}
	if n == 0 {
		return nil, nil
	}
	tags := make([]string, 0, n)
	for range n {
		tag, err := decodeName(d, "tag")
		if err != nil {
			return nil, err
		}
		if len(tags) > 0 && tag <= tags[len(tags)-1] {
			return nil, fmt.Errorf("%w: malformed tag list: not sorted and unique", ErrCorrupt)
		}
		tags = append(tags, tag)
	}
	return tags, nil
}

// malformed wraps a decoding error of what as ErrCorrupt. The rpc error is kept as text
// only: it carries a wire category of its own, which must not leak into a storage error.
func malformed(what string, err error) error {
	return fmt.Errorf("%w: malformed %s: %v", ErrCorrupt, what, err)
}

// appendAppliedResult appends the result of an applied command.
func appendAppliedResult(b []byte) []byte { return rpc.AppendArrayHeader(b, 0) }

// appendRejectedResult appends the result of a command that err rejected. err wraps one of
// the sentinels of resultCodes; any other is reported as ErrCorrupt.
func appendRejectedResult(b []byte, err error) []byte {
	code := uint64(resultCorrupt)
	for _, rc := range resultCodes {
		if errors.Is(err, rc.err) {
			code = rc.code
			break
		}
	}
	b = rpc.AppendArrayHeader(b, 2)
	b = rpc.AppendUint(b, code)
	return rpc.AppendString(b, err.Error())
}

// decodeResult turns an Apply result back into nil (applied) or the rejection's error,
// which wraps the sentinel of its code and reads as the message Apply gave.
func decodeResult(b []byte) error {
	d := rpc.NewDecoder(b)
	n, err := d.ArrayLen()
	if err != nil || n != 0 && n != 2 {
		return badResult(b)
	}
	if n == 0 {
		if d.Remaining() != 0 {
			return badResult(b)
		}
		return nil
	}
	code, err1 := d.Uint()
	msg, err2 := d.String()
	if err1 != nil || err2 != nil || d.Remaining() != 0 {
		return badResult(b)
	}
	for _, rc := range resultCodes {
		if rc.code == code {
			return &rejectedError{err: rc.err, msg: msg}
		}
	}
	return fmt.Errorf("%w: apply result with unknown code %d: %s", ErrCorrupt, code, msg)
}

// badResult is the error of an Apply result that does not decode: a bug in the raft
// layer, or a replica of another build.
func badResult(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty apply result", ErrCorrupt)
	}
	return fmt.Errorf("%w: malformed apply result % x", ErrCorrupt, b[:min(len(b), 32)])
}

// rejectedError is a command rejection as the proposer sees it: the sentinel of the
// result's code, and the message Apply wrote (which already names that sentinel).
type rejectedError struct {
	err error
	msg string
}

func (e *rejectedError) Error() string { return e.msg }
func (e *rejectedError) Unwrap() error { return e.err }

// appendSnapshotHeader appends the header record of a snapshot of n collections and
// blobs blobs: version 1 when there are none, version 2 otherwise.
func appendSnapshotHeader(b []byte, n, blobs int) []byte {
	if blobs == 0 {
		b = rpc.AppendArrayHeader(b, 3)
		b = rpc.AppendString(b, snapshotMagic)
		b = rpc.AppendUint(b, snapshotVersion)
		return rpc.AppendUint(b, uint64(n))
	}
	b = rpc.AppendArrayHeader(b, 4)
	b = rpc.AppendString(b, snapshotMagic)
	b = rpc.AppendUint(b, blobSnapshotVersion)
	b = rpc.AppendUint(b, uint64(n))
	return rpc.AppendUint(b, uint64(blobs))
}

// appendCollectionRecord appends the record that opens a collection of n keys.
func appendCollectionRecord(b []byte, name string, n int) []byte {
	b = rpc.AppendArrayHeader(b, 2)
	b = rpc.AppendString(b, name)
	return rpc.AppendUint(b, uint64(n))
}

// appendEntryHead appends the start of an entry record, up to the header of its value of
// n bytes; the value and the tag list follow.
func appendEntryHead(b []byte, key string, n int) []byte {
	b = rpc.AppendArrayHeader(b, 3)
	b = rpc.AppendString(b, key)
	return rpc.AppendRawHeader(b, n)
}

// snapshotReader reads the records of a snapshot stream.
type snapshotReader struct {
	fr *rpc.FrameReader
	d  rpc.Decoder
}

func newSnapshotReader(r io.Reader) *snapshotReader {
	return &snapshotReader{fr: rpc.NewFrameReader(r, maxSnapshotRecord)}
}

// next positions the decoder at the elements of the next record, which must be an
// array, and returns how many it has; what names the record in errors. The end of the
// stream is an error here: the counts of earlier records say when the stream is complete.
func (sr *snapshotReader) next(what string) (int, error) {
	raw, err := sr.fr.NextRaw()
	if err == io.EOF {
		return 0, fmt.Errorf("%w: snapshot ends before its %s record", ErrCorrupt, what)
	}
	if err != nil {
		return 0, sr.streamError(what, err)
	}
	sr.d.Reset(raw)
	n, err := sr.d.ArrayLen()
	if err != nil {
		return 0, malformed("snapshot "+what+" record", err)
	}
	return n, nil
}

// end checks that the stream holds nothing after the last record.
func (sr *snapshotReader) end() error {
	_, err := sr.fr.NextRaw()
	switch {
	case err == io.EOF:
		return nil
	case err == nil:
		return fmt.Errorf("%w: data after the last snapshot record", ErrCorrupt)
	}
	return sr.streamError("trailing", err)
}

// streamError classifies an error of the frame reader: malformed or truncated bytes are
// ErrCorrupt, anything else is the reader's own failure and is passed on.
func (sr *snapshotReader) streamError(what string, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, rpc.ErrParse) || errors.Is(err, rpc.ErrFrameFormat) {
		return malformed("snapshot "+what+" record", err)
	}
	return fmt.Errorf("reading the snapshot: %w", err)
}

// snapshotHeader is what a snapshot's header announces.
type snapshotHeader struct {
	version     uint64
	collections uint64
	blobs       uint64 // version 2 only
}

// header reads the header record.
func (sr *snapshotReader) header() (snapshotHeader, error) {
	var h snapshotHeader
	n, err := sr.next("header")
	if err != nil {
		return h, err
	}
	if n < 2 {
		return h, fmt.Errorf("%w: snapshot header with %d elements", ErrCorrupt, n)
	}
	magic, err := sr.d.String()
	if err != nil || magic != snapshotMagic {
		return h, fmt.Errorf("%w: not a storage snapshot", ErrCorrupt)
	}
	if h.version, err = sr.d.Uint(); err != nil {
		return h, malformed("snapshot version", err)
	}
	want := 3
	switch h.version {
	case snapshotVersion:
	case blobSnapshotVersion:
		want = 4
	default:
		return h, fmt.Errorf("%w: snapshot version %d, this build reads %d and %d",
			ErrUnsupportedVersion, h.version, snapshotVersion, blobSnapshotVersion)
	}
	if n != want {
		return h, fmt.Errorf("%w: snapshot header with %d elements, want %d", ErrCorrupt, n, want)
	}
	if h.collections, err = sr.d.Uint(); err != nil {
		return h, malformed("snapshot header", err)
	}
	if h.version == blobSnapshotVersion {
		if h.blobs, err = sr.d.Uint(); err != nil {
			return h, malformed("snapshot header", err)
		}
	}
	return h, sr.done("header")
}

// collection reads a collection record: its name and its number of keys.
func (sr *snapshotReader) collection() (string, uint64, error) {
	n, err := sr.next("collection")
	if err != nil {
		return "", 0, err
	}
	if n != 2 {
		return "", 0, fmt.Errorf("%w: snapshot collection record with %d elements, want 2", ErrCorrupt, n)
	}
	name, err := decodeName(&sr.d, "collection")
	if err != nil {
		return "", 0, err
	}
	keys, err := sr.d.Uint()
	if err != nil {
		return "", 0, malformed("snapshot collection record", err)
	}
	if keys == 0 {
		return "", 0, fmt.Errorf("%w: empty collection %s in the snapshot", ErrCorrupt, displayName(name))
	}
	return name, keys, sr.done("collection")
}

// entry reads an entry record of a snapshot of the given version: an inline value,
// which aliases the reader's buffer, or (version 2) a blob reference.
func (sr *snapshotReader) entry(version uint64) (string, *entry, error) {
	n, err := sr.next("entry")
	if err != nil {
		return "", nil, err
	}
	if n != 3 && (n != 4 || version < blobSnapshotVersion) {
		return "", nil, fmt.Errorf("%w: snapshot entry record with %d elements", ErrCorrupt, n)
	}
	key, err := decodeName(&sr.d, "key")
	if err != nil {
		return "", nil, err
	}
	e := &entry{}
	if n == 3 {
		if e.value, err = sr.d.Bytes(); err != nil {
			return "", nil, malformed("snapshot value", err)
		}
		if err := checkValueSize(e.value, MaxReplicatedValueSize); err != nil {
			return "", nil, err
		}
	} else {
		ref, err := decodeBlobRef(&sr.d)
		if err != nil {
			return "", nil, err
		}
		e.blob = &ref
	}
	if e.tags, err = decodeTagList(&sr.d); err != nil {
		return "", nil, err
	}
	return key, e, sr.done("entry")
}

// done checks that the current record has been read to its end.
func (sr *snapshotReader) done(what string) error {
	if sr.d.Remaining() != 0 {
		return fmt.Errorf("%w: %d bytes after the snapshot %s record", ErrCorrupt, sr.d.Remaining(), what)
	}
	return nil
}
