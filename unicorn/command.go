package unicorn

import (
	"errors"
	"fmt"

	"github.com/cocaine/cocaine/rpc"
)

// Commands are what the Service proposes and the Store applies. Each is one msgpack
// array, versioned by its first element so that a later release can read the log of an
// earlier one:
//
//	put        [1, 1, path, value, version]
//	create     [1, 2, path, value, flags, lease]      flags: 1 ephemeral | 2 sequence
//	remove     [1, 3, path, version]                  version -1: any
//	increment  [1, 4, path, delta]                    delta: int, uint or double
//	txn        [1, 5, [compare...], [op...], [op...]]
//	grant      [1, 6, ttl_seconds]
//	revoke     [1, 7, [lease_id...]]
//
//	compare    [path, target, op, operand]            target: 1 value, 2 version,
//	                                                  3 exists, 4 mod_revision,
//	                                                  5 create_revision;
//	                                                  op: 1 ==, 2 !=, 3 <, 4 >
//	op         [1, path, value, version]              put (version -1: any)
//	           [2, path, value, flags, lease]         create
//	           [3, path, version]                     remove
//	           [4, path]                              get
//
// Values are embedded as msgpack objects (not as byte strings), so a command is itself
// readable msgpack. Results are arrays too: [0, payload...] on success, [code, message]
// on failure, code being the unicorn error code (errors.go).

// CommandVersion is the version of the command (and result) encoding this package writes
// and reads.
const CommandVersion = 1

// Limits a command must respect; the decoder enforces them, so that every replica rejects
// the same commands.
const (
	// MaxTxnOps bounds the compares, and each branch's operations, of one transaction.
	MaxTxnOps = 128
	// MaxRevokeBatch bounds the leases one revoke command names.
	MaxRevokeBatch = 1024
)

type opcode uint8

const (
	opPut opcode = iota + 1
	opCreate
	opRemove
	opIncrement
	opTxn
	opGrant
	opRevoke
)

// Create flags as encoded in commands.
const (
	flagEphemeral = 1 << iota
	flagSequence
)

// command is a decoded command.
type command struct {
	op      opcode
	path    string
	value   []byte // one msgpack object
	version int64
	flags   uint64
	lease   LeaseID
	delta   []byte // one msgpack number
	ttl     int64
	leases  []LeaseID
	txn     Txn
}

func appendHead(op opcode, n int) []byte {
	b := rpc.AppendArrayHeader(nil, n)
	b = rpc.AppendUint(b, CommandVersion)
	return rpc.AppendUint(b, uint64(op))
}

func encodePut(path string, value []byte, version int64) []byte {
	b := appendHead(opPut, 5)
	b = rpc.AppendString(b, path)
	b = append(b, value...)
	return rpc.AppendInt(b, version)
}

func createFlags(o CreateOptions) uint64 {
	var f uint64
	if o.Ephemeral || o.Lease != 0 {
		f |= flagEphemeral
	}
	if o.Sequence {
		f |= flagSequence
	}
	return f
}

func encodeCreate(path string, value []byte, o CreateOptions) []byte {
	b := appendHead(opCreate, 6)
	b = rpc.AppendString(b, path)
	b = append(b, value...)
	b = rpc.AppendUint(b, createFlags(o))
	return rpc.AppendInt(b, int64(o.Lease))
}

func encodeRemove(path string, version int64) []byte {
	b := appendHead(opRemove, 4)
	b = rpc.AppendString(b, path)
	return rpc.AppendInt(b, version)
}

func encodeIncrement(path string, delta []byte) []byte {
	b := appendHead(opIncrement, 4)
	b = rpc.AppendString(b, path)
	return append(b, delta...)
}

func encodeGrant(ttl int64) []byte {
	return rpc.AppendInt(appendHead(opGrant, 3), ttl)
}

func encodeRevoke(ids ...LeaseID) []byte {
	b := appendHead(opRevoke, 3)
	b = rpc.AppendArrayHeader(b, len(ids))
	for _, id := range ids {
		b = rpc.AppendInt(b, int64(id))
	}
	return b
}

func encodeTxn(t Txn) []byte {
	b := appendHead(opTxn, 5)
	b = rpc.AppendArrayHeader(b, len(t.If))
	for _, c := range t.If {
		b = rpc.AppendArrayHeader(b, 4)
		b = rpc.AppendString(b, c.Path)
		b = rpc.AppendUint(b, uint64(c.Target))
		b = rpc.AppendUint(b, uint64(c.Op))
		switch c.Target {
		case CompareValue:
			b = appendValue(b, c.Value)
		case CompareExists:
			b = rpc.AppendBool(b, c.Exists)
		default:
			b = rpc.AppendInt(b, c.Number)
		}
	}
	for _, ops := range [][]Op{t.Then, t.Else} {
		b = rpc.AppendArrayHeader(b, len(ops))
		for _, o := range ops {
			b = appendOp(b, o)
		}
	}
	return b
}

func appendOp(b []byte, o Op) []byte {
	switch o.Kind {
	case OpPut:
		b = rpc.AppendArrayHeader(b, 4)
		b = rpc.AppendUint(b, uint64(o.Kind))
		b = rpc.AppendString(b, o.Path)
		b = appendValue(b, o.Value)
		return rpc.AppendInt(b, o.Version)
	case OpCreate:
		b = rpc.AppendArrayHeader(b, 5)
		b = rpc.AppendUint(b, uint64(o.Kind))
		b = rpc.AppendString(b, o.Path)
		b = appendValue(b, o.Value)
		b = rpc.AppendUint(b, createFlags(o.Create))
		return rpc.AppendInt(b, int64(o.Create.Lease))
	case OpRemove:
		b = rpc.AppendArrayHeader(b, 3)
		b = rpc.AppendUint(b, uint64(o.Kind))
		b = rpc.AppendString(b, o.Path)
		return rpc.AppendInt(b, o.Version)
	}
	b = rpc.AppendArrayHeader(b, 2)
	b = rpc.AppendUint(b, uint64(o.Kind))
	return rpc.AppendString(b, o.Path)
}

// appendValue appends a stored value, msgpack nil for an empty one.
func appendValue(b, v []byte) []byte {
	if len(v) == 0 {
		return rpc.AppendNil(b)
	}
	return append(b, v...)
}

// errMalformed marks a command or snapshot that does not decode.
var errMalformed = errors.New("malformed")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", ErrBackend, errMalformed, fmt.Sprintf(format, args...))
}

// decodeCommand decodes one command. Every failure wraps ErrBackend; nothing in b can
// make it panic or allocate much more than len(b).
func decodeCommand(b []byte) (*command, error) {
	d := rpc.NewDecoder(b)
	n, err := d.ArrayLen()
	if err != nil {
		return nil, malformed("command: %v", err)
	}
	if n < 2 {
		return nil, malformed("command of %d elements", n)
	}
	v, err := d.Uint()
	if err != nil {
		return nil, malformed("command version: %v", err)
	}
	if v != CommandVersion {
		return nil, malformed("command version %d, this release reads %d", v, CommandVersion)
	}
	op, err := d.Uint()
	if err != nil {
		return nil, malformed("command op: %v", err)
	}
	c := &command{op: opcode(op)}
	want := map[opcode]int{opPut: 5, opCreate: 6, opRemove: 4, opIncrement: 4, opTxn: 5, opGrant: 3, opRevoke: 3}[c.op]
	if want == 0 || op > 255 {
		return nil, malformed("unknown command op %d", op)
	}
	if n != want {
		return nil, malformed("command op %d has %d elements, want %d", op, n, want)
	}
	switch c.op {
	case opPut:
		err = decodeAll(d, str(&c.path), raw(&c.value), i64(&c.version))
	case opCreate:
		err = decodeAll(d, str(&c.path), raw(&c.value), u64(&c.flags), lease(&c.lease))
	case opRemove:
		err = decodeAll(d, str(&c.path), i64(&c.version))
	case opIncrement:
		err = decodeAll(d, str(&c.path), raw(&c.delta))
	case opGrant:
		err = decodeAll(d, i64(&c.ttl))
	case opRevoke:
		c.leases, err = decodeLeases(d)
	case opTxn:
		c.txn, err = decodeTxn(d)
	}
	if err != nil {
		return nil, malformed("command op %d: %v", op, err)
	}
	if d.Remaining() != 0 {
		return nil, malformed("%d bytes after the command", d.Remaining())
	}
	return c, nil
}

// field decoders, composed by decodeAll
type field func(d *rpc.Decoder) error

func decodeAll(d *rpc.Decoder, fs ...field) error {
	for _, f := range fs {
		if err := f(d); err != nil {
			return err
		}
	}
	return nil
}

func str(p *string) field {
	return func(d *rpc.Decoder) (err error) { *p, err = d.String(); return err }
}

func i64(p *int64) field {
	return func(d *rpc.Decoder) (err error) { *p, err = d.Int(); return err }
}

func u64(p *uint64) field {
	return func(d *rpc.Decoder) (err error) { *p, err = d.Uint(); return err }
}

func lease(p *LeaseID) field {
	return func(d *rpc.Decoder) error {
		v, err := d.Int()
		*p = LeaseID(v)
		return err
	}
}

func boolean(p *bool) field {
	return func(d *rpc.Decoder) (err error) { *p, err = d.Bool(); return err }
}

// raw copies the next object, so that the command's buffer is not retained.
func raw(p *[]byte) field {
	return func(d *rpc.Decoder) error {
		r, err := d.Raw()
		*p = append([]byte(nil), r...)
		return err
	}
}

func decodeLeases(d *rpc.Decoder) ([]LeaseID, error) {
	n, err := d.ArrayLen()
	if err != nil {
		return nil, err
	}
	if n > MaxRevokeBatch {
		return nil, fmt.Errorf("%d leases in one revoke, at most %d", n, MaxRevokeBatch)
	}
	ids := make([]LeaseID, n)
	for i := range ids {
		if err := lease(&ids[i])(d); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

func decodeTxn(d *rpc.Decoder) (Txn, error) {
	var t Txn
	n, err := d.ArrayLen()
	if err != nil {
		return t, err
	}
	if n > MaxTxnOps {
		return t, fmt.Errorf("%d compares, at most %d", n, MaxTxnOps)
	}
	t.If = make([]Compare, n)
	for i := range t.If {
		if t.If[i], err = decodeCompare(d); err != nil {
			return t, fmt.Errorf("compare %d: %w", i, err)
		}
	}
	for _, branch := range []*[]Op{&t.Then, &t.Else} {
		n, err := d.ArrayLen()
		if err != nil {
			return t, err
		}
		if n > MaxTxnOps {
			return t, fmt.Errorf("%d operations, at most %d", n, MaxTxnOps)
		}
		ops := make([]Op, n)
		for i := range ops {
			if ops[i], err = decodeOp(d); err != nil {
				return t, fmt.Errorf("operation %d: %w", i, err)
			}
		}
		*branch = ops
	}
	return t, nil
}

func decodeCompare(d *rpc.Decoder) (Compare, error) {
	var c Compare
	n, err := d.ArrayLen()
	if err != nil {
		return c, err
	}
	if n != 4 {
		return c, fmt.Errorf("a compare has 4 elements, got %d", n)
	}
	var target, op uint64
	if err := decodeAll(d, str(&c.Path), u64(&target), u64(&op)); err != nil {
		return c, err
	}
	if target < uint64(CompareValue) || target > uint64(CompareCreateRevision) {
		return c, fmt.Errorf("unknown compare target %d", target)
	}
	if op < uint64(Equal) || op > uint64(Greater) {
		return c, fmt.Errorf("unknown compare op %d", op)
	}
	c.Target, c.Op = CompareTarget(target), CompareOp(op)
	switch c.Target {
	case CompareValue:
		err = raw(&c.Value)(d)
	case CompareExists:
		err = boolean(&c.Exists)(d)
	default:
		err = i64(&c.Number)(d)
	}
	return c, err
}

func decodeOp(d *rpc.Decoder) (Op, error) {
	var o Op
	n, err := d.ArrayLen()
	if err != nil {
		return o, err
	}
	if n < 1 {
		return o, errors.New("an empty operation")
	}
	kind, err := d.Uint()
	if err != nil {
		return o, err
	}
	o.Kind = OpKind(kind)
	want := map[OpKind]int{OpPut: 4, OpCreate: 5, OpRemove: 3, OpGet: 2}[o.Kind]
	if want == 0 || kind > 255 {
		return o, fmt.Errorf("unknown operation %d", kind)
	}
	if n != want {
		return o, fmt.Errorf("operation %d has %d elements, want %d", kind, n, want)
	}
	switch o.Kind {
	case OpPut:
		err = decodeAll(d, str(&o.Path), raw(&o.Value), i64(&o.Version))
	case OpCreate:
		var flags uint64
		err = decodeAll(d, str(&o.Path), raw(&o.Value), u64(&flags), lease(&o.Create.Lease))
		o.Create.Ephemeral = flags&flagEphemeral != 0
		o.Create.Sequence = flags&flagSequence != 0
		if err == nil && flags&^uint64(flagEphemeral|flagSequence) != 0 {
			err = fmt.Errorf("unknown create flags %#x", flags)
		}
	case OpRemove:
		err = decodeAll(d, str(&o.Path), i64(&o.Version))
	case OpGet:
		err = str(&o.Path)(d)
	}
	return o, err
}

// Results.

func resultOK(n int) []byte {
	b := rpc.AppendArrayHeader(nil, n+1)
	return rpc.AppendUint(b, 0)
}

func resultErr(err error) []byte {
	b := rpc.AppendArrayHeader(nil, 2)
	b = rpc.AppendUint(b, uint64(codeOf(err)))
	return rpc.AppendString(b, err.Error())
}

// decodeResult splits a result into a decoder positioned at its payload and the payload
// length, or returns the error it carries.
func decodeResult(res []byte) (*rpc.Decoder, int, error) {
	d := rpc.NewDecoder(res)
	n, err := d.ArrayLen()
	if err != nil || n < 1 {
		return nil, 0, fmt.Errorf("%w: malformed command result", ErrBackend)
	}
	code, err := d.Uint()
	if err != nil {
		return nil, 0, fmt.Errorf("%w: malformed command result", ErrBackend)
	}
	if code != 0 {
		msg, _ := d.String()
		return nil, 0, &codedError{err: sentinelOf(int(code)), msg: msg}
	}
	return d, n - 1, nil
}
