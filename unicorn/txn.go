package unicorn

import (
	"fmt"

	"github.com/cocaine/cocaine/rpc"
)

// CreateOptions are the flags of a create.
type CreateOptions struct {
	// Ephemeral binds the node to a lease: it is removed when the lease ends. With Lease
	// 0 the Service picks one: the connection's session lease for RPC callers, the host
	// lease for the Go API.
	Ephemeral bool
	// Sequence appends a 10-digit counter, unique under the parent, to the name.
	Sequence bool
	// Lease is the lease to bind an ephemeral node to; non-zero implies Ephemeral.
	Lease LeaseID
}

// CompareTarget is what a transaction compare looks at.
type CompareTarget uint8

// Compare targets. An absent node has version -1 and revisions 0; a value compare on an
// absent node is false whatever the operator.
const (
	CompareValue CompareTarget = iota + 1
	CompareVersion
	CompareExists
	CompareModRevision
	CompareCreateRevision
)

var targetNames = map[string]CompareTarget{
	"value": CompareValue, "version": CompareVersion, "exists": CompareExists,
	"mod_revision": CompareModRevision, "create_revision": CompareCreateRevision,
}

// CompareOp is a compare's operator. Values and existence compare only with Equal and
// NotEqual; values are equal when their msgpack encodings are byte-wise equal.
type CompareOp uint8

// Compare operators.
const (
	Equal CompareOp = iota + 1
	NotEqual
	Less
	Greater
)

var opNames = map[string]CompareOp{"==": Equal, "!=": NotEqual, "<": Less, ">": Greater}

// Compare is one condition of a transaction.
type Compare struct {
	Path   string
	Target CompareTarget
	Op     CompareOp
	Value  []byte // CompareValue: one msgpack object
	Number int64  // CompareVersion, CompareModRevision, CompareCreateRevision
	Exists bool   // CompareExists
}

// OpKind is the kind of a transaction operation.
type OpKind uint8

// Operation kinds.
const (
	OpPut OpKind = iota + 1
	OpCreate
	OpRemove
	OpGet
)

var kindNames = map[string]OpKind{"put": OpPut, "create": OpCreate, "remove": OpRemove, "get": OpGet}

// Op is one operation of a transaction. Inside a transaction every operation must
// succeed or the whole transaction fails with that operation's error and changes
// nothing: a put on an absent node is ErrNoNode, a put or remove whose Version (-1: any)
// does not match is ErrVersionNotAllowed, a create of an existing node ErrNodeExists, a
// get of a node with children ErrChildNotAllowed.
type Op struct {
	Kind    OpKind
	Path    string
	Value   []byte // put, create: one msgpack object
	Version int64  // put, remove: expected version, -1 for any
	Create  CreateOptions
}

// Txn is a transaction: if every compare of If holds, Then runs, else Else; all at one
// revision.
type Txn struct {
	If   []Compare
	Then []Op
	Else []Op
}

// OpResult is the result of one operation: for create the created path and value at
// version 0, for put the path, the new value and version, for remove the path with a nil
// value and version -1, for get the value and version ([nil, -1] when absent).
type OpResult struct {
	Path    string
	Value   []byte
	Version int64
}

// TxnResult is the outcome of a transaction: which branch ran, each of its operations'
// results, and the revision after it.
type TxnResult struct {
	Succeeded bool
	Results   []OpResult
	Revision  Revision
}

// decodeTxnResult reads the payload of a txn result: succeeded, [[path, value,
// version]...], revision.
func decodeTxnResult(d *rpc.Decoder) (TxnResult, error) {
	var r TxnResult
	var err error
	if r.Succeeded, err = d.Bool(); err != nil {
		return r, err
	}
	n, err := d.ArrayLen()
	if err != nil {
		return r, err
	}
	r.Results = make([]OpResult, n)
	for i := range r.Results {
		if _, err := d.ArrayLen(); err != nil {
			return r, err
		}
		res := &r.Results[i]
		if err := decodeAll(d, str(&res.Path), raw(&res.Value), i64(&res.Version)); err != nil {
			return r, err
		}
	}
	rev, err := d.Int()
	r.Revision = Revision(rev)
	return r, err
}

// appendTxnResult encodes a TxnResult for the wire: [succeeded, [[path, value,
// version]...], revision].
func appendTxnResult(b []byte, r TxnResult) []byte {
	b = rpc.AppendArrayHeader(b, 3)
	b = rpc.AppendBool(b, r.Succeeded)
	b = rpc.AppendArrayHeader(b, len(r.Results))
	for _, res := range r.Results {
		b = rpc.AppendArrayHeader(b, 3)
		b = rpc.AppendString(b, res.Path)
		b = appendValue(b, res.Value)
		b = rpc.AppendInt(b, res.Version)
	}
	return rpc.AppendInt(b, int64(r.Revision))
}

// wireCompares decodes the compares argument of the txn method: [[path, target, op,
// operand]...]. Type errors are protocol violations; unknown names are reported as
// invalidArg so that the caller gets an error reply.
type wireCompares struct {
	cs         []Compare
	invalidArg error
}

// DecodeMsgpack implements rpc.ArgDecoder.
func (w *wireCompares) DecodeMsgpack(d *rpc.Decoder) error {
	n, err := d.ArrayLen()
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		k, err := d.ArrayLen()
		if err != nil {
			return err
		}
		if k < 4 {
			return fmt.Errorf("compare %d: [path, target, op, operand] has %d elements", i, k)
		}
		var c Compare
		var target, op string
		if err := decodeAll(d, str(&c.Path), str(&target), str(&op)); err != nil {
			return err
		}
		c.Target, c.Op = targetNames[target], opNames[op]
		switch c.Target {
		case CompareValue:
			err = raw(&c.Value)(d)
		case CompareExists:
			err = boolean(&c.Exists)(d)
		case 0:
			err = d.Skip()
		default:
			err = i64(&c.Number)(d)
		}
		if err != nil {
			return fmt.Errorf("compare %d operand: %w", i, err)
		}
		for j := 4; j < k; j++ {
			if err := d.Skip(); err != nil {
				return err
			}
		}
		if c.Target == 0 && w.invalidArg == nil {
			w.invalidArg = errorf(ErrInvalidNodeName, "compare %d: unknown target %q", i, target)
		}
		if c.Op == 0 && w.invalidArg == nil {
			w.invalidArg = errorf(ErrInvalidNodeName, "compare %d: unknown operator %q", i, op)
		}
		w.cs = append(w.cs, c)
	}
	return nil
}

// wireOps decodes a branch of the txn method: [["put", path, value, ?version],
// ["create", path, value, ?flags], ["remove", path, ?version], ["get", path]...].
type wireOps struct {
	ops        []Op
	invalidArg error
}

// DecodeMsgpack implements rpc.ArgDecoder.
func (w *wireOps) DecodeMsgpack(d *rpc.Decoder) error {
	n, err := d.ArrayLen()
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		k, err := d.ArrayLen()
		if err != nil {
			return err
		}
		if k < 2 {
			return fmt.Errorf("operation %d: [kind, path, ...] has %d elements", i, k)
		}
		var kind string
		o := Op{Version: -1}
		if err := decodeAll(d, str(&kind), str(&o.Path)); err != nil {
			return err
		}
		o.Kind = kindNames[kind]
		used := 2
		switch o.Kind {
		case OpPut, OpCreate:
			if k < 3 {
				return fmt.Errorf("operation %d: %s needs a value", i, kind)
			}
			if err := raw(&o.Value)(d); err != nil {
				return err
			}
			used = 3
			if k > 3 {
				used = 4
				if o.Kind == OpPut {
					err = i64(&o.Version)(d)
				} else {
					var f createFlagsArg
					err = f.DecodeMsgpack(d)
					o.Create = f.CreateOptions
				}
				if err != nil {
					return fmt.Errorf("operation %d: %w", i, err)
				}
			}
		case OpRemove:
			if k > 2 {
				used = 3
				if err := i64(&o.Version)(d); err != nil {
					return fmt.Errorf("operation %d: %w", i, err)
				}
			}
		case 0:
			if w.invalidArg == nil {
				w.invalidArg = errorf(ErrInvalidNodeName, "operation %d: unknown kind %q", i, kind)
			}
		}
		for j := used; j < k; j++ {
			if err := d.Skip(); err != nil {
				return err
			}
		}
		w.ops = append(w.ops, o)
	}
	return nil
}

// createFlagsArg decodes the flags map of create_ex and of a transaction's create:
// {"ephemeral": bool, "sequence": bool, "lease": int}; unknown keys are ignored.
type createFlagsArg struct{ CreateOptions }

// DecodeMsgpack implements rpc.ArgDecoder.
func (f *createFlagsArg) DecodeMsgpack(d *rpc.Decoder) error {
	n, err := d.MapLen()
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		key, err := d.String()
		if err != nil {
			return fmt.Errorf("flag name: %w", err)
		}
		switch key {
		case "ephemeral":
			err = boolean(&f.Ephemeral)(d)
		case "sequence":
			err = boolean(&f.Sequence)(d)
		case "lease":
			err = lease(&f.Lease)(d)
		default:
			err = d.Skip()
		}
		if err != nil {
			return fmt.Errorf("flag %q: %w", key, err)
		}
	}
	return nil
}
