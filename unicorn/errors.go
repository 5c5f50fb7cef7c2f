package unicorn

import (
	"errors"
	"fmt"

	"github.com/cocaine/cocaine/rpc"
)

// Sentinel errors, one per unicorn error code (category 11, plugins.md §1.7, plus 12 and
// 13 of this implementation). Errors returned by the Store and the Service wrap them with
// the path or lease they concern: match them with errors.Is, never by message. On the
// wire each becomes [[11, code], message] through errorTable, and an error decoded from
// the wire matches the sentinel with errors.Is through WireCode.
var (
	// ErrChildNotAllowed (1): a value read, subscribe or increment on a node with children.
	ErrChildNotAllowed = errors.New("unicorn: child not allowed")
	// ErrInvalidType (2): increment of a non-numeric delta or stored value, or an
	// integer overflow.
	ErrInvalidType = errors.New("unicorn: invalid type")
	// ErrInvalidValue (3): a value over the size limit, or not exactly one msgpack object.
	ErrInvalidValue = errors.New("unicorn: invalid value")
	// ErrUnknown (4): unused by this implementation; kept for the table.
	ErrUnknown = errors.New("unicorn: unknown error")
	// ErrInvalidNodeName (5): a malformed compare or operation of a transaction, or an
	// argument of an added method that has the right type but a meaningless value.
	ErrInvalidNodeName = errors.New("unicorn: invalid node name")
	// ErrInvalidPath (6): a path breaking the rules of ValidatePath.
	ErrInvalidPath = errors.New("unicorn: invalid path")
	// ErrVersionNotAllowed (7): a negative version for put, or a version mismatch of
	// remove (and of a transaction's put).
	ErrVersionNotAllowed = errors.New("unicorn: version not allowed")
	// ErrNoNode (8): the node is missing, or was removed while watched.
	ErrNoNode = errors.New("unicorn: no node")
	// ErrNodeExists (9): create of an existing node.
	ErrNodeExists = errors.New("unicorn: node exists")
	// ErrConnectionLoss (10): consensus is unavailable or timed out, the service is
	// stopping, or a lease this host relied on was lost (a lock held under it has ended).
	ErrConnectionLoss = errors.New("unicorn: connection loss")
	// ErrBackend (11): any other failure: removing a node that has children, children
	// under an ephemeral node, an exhausted sequence counter, a malformed command.
	ErrBackend = errors.New("unicorn: backend internal error")
	// ErrCompacted (12): a watch asked for events older than the retained history.
	ErrCompacted = errors.New("unicorn: compacted")
	// ErrLeaseNotFound (13): the lease does not exist (never granted, revoked or expired).
	ErrLeaseNotFound = errors.New("unicorn: lease not found")
)

// errorTable maps every sentinel to its wire code. Codes are the positions in codes.
var errorTable = rpc.ErrorTable{
	{Err: ErrChildNotAllowed, Category: rpc.CategoryUnicorn, Code: 1},
	{Err: ErrInvalidType, Category: rpc.CategoryUnicorn, Code: 2},
	{Err: ErrInvalidValue, Category: rpc.CategoryUnicorn, Code: 3},
	{Err: ErrUnknown, Category: rpc.CategoryUnicorn, Code: 4},
	{Err: ErrInvalidNodeName, Category: rpc.CategoryUnicorn, Code: 5},
	{Err: ErrInvalidPath, Category: rpc.CategoryUnicorn, Code: 6},
	{Err: ErrVersionNotAllowed, Category: rpc.CategoryUnicorn, Code: 7},
	{Err: ErrNoNode, Category: rpc.CategoryUnicorn, Code: 8},
	{Err: ErrNodeExists, Category: rpc.CategoryUnicorn, Code: 9},
	{Err: ErrConnectionLoss, Category: rpc.CategoryUnicorn, Code: 10},
	{Err: ErrBackend, Category: rpc.CategoryUnicorn, Code: 11},
	{Err: ErrCompacted, Category: rpc.CategoryUnicorn, Code: 12},
	{Err: ErrLeaseNotFound, Category: rpc.CategoryUnicorn, Code: 13},
}

// ErrorTable returns the wire mapping of the unicorn sentinels, for callers that relay
// unicorn errors in their own replies.
func ErrorTable() rpc.ErrorTable { return append(rpc.ErrorTable(nil), errorTable...) }

// WireCode returns the rpc.Error a sentinel travels as (nil for other errors): a client
// matches a reply with errors.Is(err, unicorn.WireCode(unicorn.ErrNoNode)).
func WireCode(sentinel error) *rpc.Error {
	for _, c := range errorTable {
		if c.Err == sentinel {
			return rpc.NewError(c.Category, c.Code, sentinel.Error())
		}
	}
	return nil
}

// codeOf returns the unicorn code of err (ErrBackend's for errors outside the table).
func codeOf(err error) int {
	for _, c := range errorTable {
		if errors.Is(err, c.Err) {
			return c.Code
		}
	}
	return 11
}

// sentinelOf returns the sentinel with the unicorn code code (ErrBackend for unknown codes).
func sentinelOf(code int) error {
	for _, c := range errorTable {
		if c.Code == code {
			return c.Err
		}
	}
	return ErrBackend
}

// codedError is an error decoded from an FSM result: the sentinel of its code and the
// message the FSM wrote.
type codedError struct {
	err error
	msg string
}

func (e *codedError) Error() string { return e.msg }
func (e *codedError) Unwrap() error { return e.err }

// errorf wraps a sentinel with a detail: "unicorn: no node: /a/b".
func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}

// compactedError is the error of a watch that starts (or falls) before the history.
func compactedError(current, oldest Revision) error {
	return fmt.Errorf("%w, current revision is %d, oldest available is %d", ErrCompacted, current, oldest)
}
