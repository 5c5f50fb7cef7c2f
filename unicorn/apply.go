package unicorn

import (
	"bytes"
	"fmt"
	"math"
	"slices"

	"github.com/cocaine/cocaine/rpc"
)

// run applies c and returns its result. On error the caller rolls back.
func (b *batch) run(c *command) ([]byte, error) {
	switch c.op {
	case opPut:
		if c.version < 0 {
			return nil, errorf(ErrVersionNotAllowed, "put of %s with version %d", quote(c.path), c.version)
		}
		ok, value, version, err := b.put(c.path, c.value, c.version, false)
		if err != nil {
			return nil, err
		}
		res := rpc.AppendBool(resultOK(3), ok)
		res = append(res, value...)
		return rpc.AppendInt(res, version), nil
	case opCreate:
		created, err := b.create(c.path, c.value, c.flags, c.lease)
		if err != nil {
			return nil, err
		}
		res := rpc.AppendString(resultOK(2), created)
		return rpc.AppendInt(res, int64(b.rev)), nil
	case opRemove:
		if err := b.remove(c.path, c.version); err != nil {
			return nil, err
		}
		return rpc.AppendInt(resultOK(1), int64(b.rev)), nil
	case opIncrement:
		value, version, err := b.increment(c.path, c.delta)
		if err != nil {
			return nil, err
		}
		return rpc.AppendInt(append(resultOK(2), value...), version), nil
	case opTxn:
		return b.txn(c.txn)
	case opGrant:
		return b.grant(c.ttl)
	case opRevoke:
		n, err := b.revoke(c.leases)
		if err != nil {
			return nil, err
		}
		res := rpc.AppendInt(resultOK(2), int64(b.s.currentRev(b)))
		return rpc.AppendInt(res, int64(n)), nil
	}
	return nil, malformed("unknown command op %d", c.op)
}

// currentRev is the revision a command's result reports: its own when it changed the
// tree, else the store's.
func (s *Store) currentRev(b *batch) Revision {
	if len(b.events) > 0 {
		return b.rev
	}
	return s.rev
}

// checkValue checks that v is exactly one msgpack object. The proposer checks more (the
// size limit, string map keys); this is the part every replica must agree on.
func checkValue(v []byte) error {
	d := rpc.NewDecoder(v)
	if len(v) == 0 || d.Skip() != nil || d.Remaining() != 0 {
		return errorf(ErrInvalidValue, "a value must be exactly one msgpack object")
	}
	return nil
}

// put sets the value of an existing node. version is the expected version: with txn set
// a mismatch is ErrVersionNotAllowed and -1 means any version; otherwise a mismatch is
// not an error and returns ok false with the current value and version.
func (b *batch) put(path string, value []byte, version int64, txn bool) (ok bool, cur []byte, curVersion int64, err error) {
	if err := ValidatePath(path); err != nil {
		return false, nil, 0, err
	}
	if err := checkValue(value); err != nil {
		return false, nil, 0, err
	}
	n := b.s.nodes[path]
	if n == nil {
		return false, nil, 0, errorf(ErrNoNode, "put of %s", quote(path))
	}
	if version != n.version && !(txn && version == -1) {
		if txn {
			return false, nil, 0, errorf(ErrVersionNotAllowed, "put of %s at version %d, the node is at version %d", quote(path), version, n.version)
		}
		return false, n.value, n.version, nil
	}
	b.save(n)
	n.value = value
	n.version++
	n.modRev = b.rev
	b.emit(EventPut, path, value, n.version)
	return true, value, n.version, nil
}

// create creates a node, and its missing ancestors as persistent nodes holding msgpack
// nil. It returns the created path (with the sequence suffix for sequential nodes).
func (b *batch) create(path string, value []byte, flags uint64, lease LeaseID) (string, error) {
	if err := ValidatePath(path); err != nil {
		return "", err
	}
	if err := checkValue(value); err != nil {
		return "", err
	}
	if flags&^uint64(flagEphemeral|flagSequence) != 0 {
		return "", malformed("unknown create flags %#x", flags)
	}
	ephemeral := flags&flagEphemeral != 0
	if ephemeral != (lease != 0) {
		return "", malformed("an ephemeral node needs a lease, and only an ephemeral node has one")
	}
	var l *leaseEntry
	if ephemeral {
		if l = b.s.leases[lease]; l == nil {
			return "", errorf(ErrLeaseNotFound, "create of %s with lease %d", quote(path), lease)
		}
	}
	if flags&flagSequence != 0 && len(path)+sequenceDigits > MaxPathLength {
		return "", errorf(ErrInvalidPath, "path of %d bytes and its sequence suffix exceed the limit of %d bytes", len(path), MaxPathLength)
	}
	parent, err := b.parents(path)
	if err != nil {
		return "", err
	}
	if flags&flagSequence != 0 {
		if parent.seq > maxSequence {
			return "", errorf(ErrBackend, "the sequence counter of %s is exhausted", quote(parentOf(path)))
		}
		b.save(parent)
		path = sequenceName(path, parent.seq)
		parent.seq++
	}
	if b.s.nodes[path] != nil {
		return "", errorf(ErrNodeExists, "%s already exists", quote(path))
	}
	b.newNode(parent, path, value, lease)
	if l != nil {
		b.attach(l, path)
	}
	return path, nil
}

// parents returns the parent of path, creating missing ancestors. Ephemeral nodes cannot
// have children, as in ZooKeeper: they vanish with their lease, and their children would
// be orphans.
func (b *batch) parents(path string) (*node, error) {
	p := parentOf(path)
	if n := b.s.nodes[p]; n != nil {
		if n.lease != 0 {
			return nil, errorf(ErrBackend, "%s is ephemeral and cannot have children", quote(p))
		}
		return n, nil
	}
	grand, err := b.parents(p)
	if err != nil {
		return nil, err
	}
	return b.newNode(grand, p, nilValue, 0), nil
}

func (b *batch) newNode(parent *node, path string, value []byte, lease LeaseID) *node {
	n := &node{value: value, createRev: b.rev, modRev: b.rev, lease: lease, kids: map[string]struct{}{}}
	b.setNode(path, n)
	b.save(parent)
	parent.cversion++
	b.addKid(parent, baseOf(path))
	b.emit(EventCreate, path, value, 0)
	return n
}

// remove deletes a node without children; version -1 matches any version.
func (b *batch) remove(path string, version int64) error {
	if err := ValidatePath(path); err != nil {
		return err
	}
	n := b.s.nodes[path]
	if n == nil {
		return errorf(ErrNoNode, "remove of %s", quote(path))
	}
	if version != -1 && version != n.version {
		return errorf(ErrVersionNotAllowed, "remove of %s at version %d, the node is at version %d", quote(path), version, n.version)
	}
	if len(n.kids) > 0 {
		return errorf(ErrBackend, "cannot remove %s: it has %d children", quote(path), len(n.kids))
	}
	b.drop(path, n)
	return nil
}

// drop deletes an existing leaf.
func (b *batch) drop(path string, n *node) {
	parent := b.s.nodes[parentOf(path)]
	b.delNode(path, n)
	b.save(parent)
	parent.cversion++
	b.delKid(parent, baseOf(path))
	if n.lease != 0 {
		if l := b.s.leases[n.lease]; l != nil {
			b.detach(l, path)
		}
	}
	b.emit(EventDelete, path, nil, -1)
}

// number is a decoded msgpack number.
type number struct {
	float bool
	f     float64
	i     int64
}

func parseNumber(v []byte) (number, bool) {
	d := rpc.NewDecoder(v)
	var n number
	var err error
	switch d.Peek() {
	case rpc.KindUint, rpc.KindInt:
		n.i, err = d.Int() // a uint above MaxInt64 fails: the sum is a signed integer
	case rpc.KindFloat:
		n.float = true
		n.f, err = d.Float()
	default:
		return n, false
	}
	return n, err == nil && d.Remaining() == 0
}

func (n number) append(b []byte) []byte {
	if n.float {
		return rpc.AppendFloat64(b, n.f)
	}
	return rpc.AppendInt(b, n.i)
}

// increment adds delta to a numeric node, creating it with delta when absent.
func (b *batch) increment(path string, delta []byte) ([]byte, int64, error) {
	if err := ValidatePath(path); err != nil {
		return nil, 0, err
	}
	dn, ok := parseNumber(delta)
	if !ok {
		return nil, 0, errorf(ErrInvalidType, "increment of %s by a value that is not a number", quote(path))
	}
	n := b.s.nodes[path]
	if n == nil {
		v := dn.append(nil)
		if _, err := b.create(path, v, 0, 0); err != nil {
			return nil, 0, err
		}
		return v, 0, nil
	}
	if len(n.kids) > 0 {
		return nil, 0, errorf(ErrChildNotAllowed, "increment of %s, which has %d children", quote(path), len(n.kids))
	}
	cur, ok := parseNumber(n.value)
	if !ok {
		return nil, 0, errorf(ErrInvalidType, "increment of %s, whose value is not a number", quote(path))
	}
	var sum number
	switch {
	case cur.float || dn.float:
		sum = number{float: true, f: cur.asFloat() + dn.asFloat()}
	default:
		s := cur.i + dn.i
		if (dn.i > 0 && s < cur.i) || (dn.i < 0 && s > cur.i) {
			return nil, 0, errorf(ErrInvalidType, "increment of %s overflows a 64-bit integer", quote(path))
		}
		sum = number{i: s}
	}
	v := sum.append(nil)
	_, _, version, err := b.put(path, v, n.version, true)
	return v, version, err
}

func (n number) asFloat() float64 {
	if n.float {
		return n.f
	}
	return float64(n.i)
}

// grant creates a lease with the next id.
func (b *batch) grant(ttl int64) ([]byte, error) {
	if ttl < 1 || ttl > math.MaxInt32 {
		return nil, errorf(ErrInvalidNodeName, "lease ttl %d seconds", ttl)
	}
	s := b.s
	id := s.nextLease
	prev := s.nextLease
	s.nextLease++
	s.leases[id] = &leaseEntry{ttl: ttl, nodes: map[string]struct{}{}}
	b.undo = append(b.undo, func() { delete(s.leases, id); s.nextLease = prev })
	res := rpc.AppendInt(resultOK(2), int64(id))
	return rpc.AppendInt(res, ttl), nil
}

// revoke deletes leases and their ephemeral nodes, in path order, at one revision.
// Unknown ids are skipped; it returns how many leases existed.
func (b *batch) revoke(ids []LeaseID) (int, error) {
	s := b.s
	found := 0
	for _, id := range ids {
		l := s.leases[id]
		if l == nil {
			continue
		}
		found++
		paths := make([]string, 0, len(l.nodes))
		for p := range l.nodes {
			paths = append(paths, p)
		}
		slices.Sort(paths)
		for _, p := range paths {
			if n := s.nodes[p]; n != nil && len(n.kids) == 0 {
				b.drop(p, n)
			}
		}
		delete(s.leases, id)
		b.undo = append(b.undo, func() { s.leases[id] = l })
	}
	return found, nil
}

// txn evaluates the compares and runs one branch; any failing operation fails the
// whole transaction, which then changes nothing.
func (b *batch) txn(t Txn) ([]byte, error) {
	ok := true
	for i, c := range t.If {
		hold, err := b.compare(c)
		if err != nil {
			return nil, fmt.Errorf("compare %d: %w", i, err)
		}
		ok = ok && hold
	}
	ops := t.Then
	if !ok {
		ops = t.Else
	}
	results := rpc.AppendArrayHeader(nil, len(ops))
	for _, o := range ops {
		var err error
		if results, err = b.op(results, o); err != nil {
			return nil, err
		}
	}
	res := rpc.AppendBool(resultOK(3), ok)
	res = append(res, results...)
	return rpc.AppendInt(res, int64(b.s.currentRev(b))), nil
}

// op runs one transaction operation and appends its result [path, value, version].
func (b *batch) op(res []byte, o Op) ([]byte, error) {
	res = rpc.AppendArrayHeader(res, 3)
	switch o.Kind {
	case OpPut:
		_, _, version, err := b.put(o.Path, o.Value, o.Version, true)
		if err != nil {
			return nil, err
		}
		res = rpc.AppendString(res, o.Path)
		return rpc.AppendInt(append(res, o.Value...), version), nil
	case OpCreate:
		created, err := b.create(o.Path, o.Value, createFlags(o.Create), o.Create.Lease)
		if err != nil {
			return nil, err
		}
		res = rpc.AppendString(res, created)
		return rpc.AppendInt(append(res, o.Value...), 0), nil
	case OpRemove:
		if err := b.remove(o.Path, o.Version); err != nil {
			return nil, err
		}
		res = rpc.AppendString(res, o.Path)
		return rpc.AppendInt(rpc.AppendNil(res), -1), nil
	case OpGet:
		if err := ValidatePath(o.Path); err != nil {
			return nil, err
		}
		value, version, err := b.s.getLocked(o.Path)
		if err != nil {
			return nil, err
		}
		res = rpc.AppendString(res, o.Path)
		return rpc.AppendInt(append(res, value...), version), nil
	}
	return nil, malformed("unknown operation %d", o.Kind)
}

// compare evaluates one compare against the current state (earlier operations of the
// transaction have not run yet: compares all come first).
func (b *batch) compare(c Compare) (bool, error) {
	if err := ValidatePath(c.Path); err != nil {
		return false, err
	}
	n := b.s.nodes[c.Path]
	var have int64
	switch c.Target {
	case CompareValue:
		if c.Op != Equal && c.Op != NotEqual {
			return false, errorf(ErrInvalidNodeName, "values compare only with == and !=")
		}
		if n == nil {
			return false, nil // an absent node has no value to compare, either way
		}
		return bytes.Equal(n.value, c.Value) == (c.Op == Equal), nil
	case CompareExists:
		if c.Op != Equal && c.Op != NotEqual {
			return false, errorf(ErrInvalidNodeName, "existence compares only with == and !=")
		}
		return (n != nil) == c.Exists == (c.Op == Equal), nil
	case CompareVersion:
		have = -1
		if n != nil {
			have = n.version
		}
	case CompareModRevision:
		if n != nil {
			have = int64(n.modRev)
		}
	case CompareCreateRevision:
		if n != nil {
			have = int64(n.createRev)
		}
	default:
		return false, errorf(ErrInvalidNodeName, "unknown compare target %d", c.Target)
	}
	switch c.Op {
	case Equal:
		return have == c.Number, nil
	case NotEqual:
		return have != c.Number, nil
	case Less:
		return have < c.Number, nil
	case Greater:
		return have > c.Number, nil
	}
	return false, errorf(ErrInvalidNodeName, "unknown compare op %d", c.Op)
}
