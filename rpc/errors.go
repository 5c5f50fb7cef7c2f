package rpc

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
)

// Error categories: Cocaine's own registry ids (protocol.md §4.3), not anything from the
// C++ standard library. Unknown ids received from a peer are kept as they are.
const (
	CategorySystem     = 1      // errno values (std::system_category)
	CategoryTransport  = 6      // cocaine.rpc.transport
	CategoryDispatch   = 7      // cocaine.rpc.dispatch
	CategoryPlugins    = 8      // cocaine.plugins (repository)
	CategorySecurity   = 9      // cocaine security
	CategoryLocator    = 10     // cocaine.service.locator
	CategoryUnicorn    = 11     // cocaine.plugins.unicorn
	CategoryGeneric    = 12     // std::generic_category: POSIX errno
	CategoryProtocol   = 13     // cocaine.rpc.protocol
	CategoryWorker     = 42     // node plugin: worker
	CategoryWorkerUser = 43     // node plugin: application-defined codes
	CategoryNode       = 0x51FF // node plugin: node
	CategoryOverseer   = 0x52FF // node plugin: overseer
	CategorySlave      = 0x53FF // node plugin: slave
	CategoryUnknown    = 255
)

// Error is a Cocaine error as it travels on the wire: [[category, code], message].
// Two Errors match with errors.Is when their category and code are equal, so a sentinel
// declared on one side matches the error decoded on the other.
type Error struct {
	Category int
	Code     int
	Message  string
}

// NewError returns an *Error; packages declare their sentinels with it.
func NewError(category, code int, message string) *Error {
	return &Error{Category: category, Code: code, Message: message}
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s [%d:%d]", e.Message, e.Category, e.Code)
}

// Is reports whether target is an *Error with the same category and code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Category == e.Category && t.Code == e.Code
}

// AppendMsgpack encodes the error as the args of an error message:
// [[category, code], message].
func (e *Error) AppendMsgpack(b []byte) ([]byte, error) {
	b = AppendArrayHeader(b, 2)
	b = AppendArrayHeader(b, 2)
	b = AppendInt(b, int64(e.Category))
	b = AppendInt(b, int64(e.Code))
	return AppendString(b, e.Message), nil
}

// Sentinels of the core categories (protocol.md §4.3). Transport and dispatch errors are
// fatal to a connection: they close it rather than travelling as replies.
var (
	ErrFrameFormat        = NewError(CategoryTransport, 1, "frame format error")
	ErrHPACK              = NewError(CategoryTransport, 2, "hpack error")
	ErrInsufficientBytes  = NewError(CategoryTransport, 3, "insufficient bytes")
	ErrParse              = NewError(CategoryTransport, 4, "parse error")
	ErrDuplicateSlot      = NewError(CategoryDispatch, 1, "duplicate slot")
	ErrInvalidArgument    = NewError(CategoryDispatch, 2, "invalid argument")
	ErrNotConnected       = NewError(CategoryDispatch, 3, "not connected")
	ErrRevokedChannel     = NewError(CategoryDispatch, 4, "revoked channel")
	ErrSlotNotFound       = NewError(CategoryDispatch, 5, "slot not found")
	ErrUnboundDispatch    = NewError(CategoryDispatch, 6, "unbound dispatch")
	ErrUncaught           = NewError(CategoryDispatch, 7, "uncaught error")
	ErrServiceUnavailable = NewError(CategoryLocator, 1, "service is not available")
	ErrRoutingStorage     = NewError(CategoryLocator, 2, "routing storage error")
	ErrMissingVersion     = NewError(CategoryLocator, 3, "missing version")
	ErrClosedUpstream     = NewError(CategoryProtocol, 1, "closed upstream")
)

// ErrFrameTooLarge is returned when a frame exceeds the configured MaxFrameSize. It is a
// transport error: the connection is closed.
var ErrFrameTooLarge = fmt.Errorf("%w: frame exceeds the size limit", ErrFrameFormat)

// ErrorTable maps a package's sentinel errors to wire errors. Each package that sends
// errors declares one (house style: sentinels in errors.go, one table).
type ErrorTable []ErrorCode

// ErrorCode binds a sentinel to its category and code.
type ErrorCode struct {
	Err      error
	Category int
	Code     int
}

// Wire converts err for the wire using the table first, then WireError.
func (t ErrorTable) Wire(err error) *Error {
	for _, c := range t {
		if errors.Is(err, c.Err) {
			return &Error{Category: c.Category, Code: c.Code, Message: wireMessage(err)}
		}
	}
	return WireError(err)
}

// wireMessage is err's text for the wire: an *Error inside it loses its own
// "[category:code]" suffix there, since the code travels beside the message and would
// read twice.
func wireMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return strings.Replace(err.Error(), e.Error(), e.Message, 1)
	}
	return err.Error()
}

// WireError converts any error into the form it takes on the wire:
//   - an *Error anywhere in the chain keeps its category and code, with the full message
//     of err (so context added with %w travels too);
//   - a syscall.Errno becomes category 12 (generic) with the errno, as the original's
//     storage backend did;
//   - fs.ErrNotExist and fs.ErrPermission become ENOENT and EACCES;
//   - anything else is dispatch/uncaught_error [7, 7] with the error text, as an uncaught
//     C++ exception was.
func WireError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return &Error{Category: e.Category, Code: e.Code, Message: wireMessage(err)}
	}
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno):
		return &Error{Category: CategoryGeneric, Code: int(errno), Message: err.Error()}
	case errors.Is(err, fs.ErrNotExist):
		return &Error{Category: CategoryGeneric, Code: int(syscall.ENOENT), Message: err.Error()}
	case errors.Is(err, fs.ErrPermission):
		return &Error{Category: CategoryGeneric, Code: int(syscall.EACCES), Message: err.Error()}
	}
	return &Error{Category: CategoryDispatch, Code: ErrUncaught.Code, Message: err.Error()}
}

// decodeError reads the args of an error message: [[category, code], message?].
func decodeError(args []byte) (*Error, error) {
	d := NewDecoder(args)
	n, err := d.ArrayLen()
	if err != nil {
		return nil, err
	}
	if n < 1 {
		return nil, fmt.Errorf("%w: error message without [category, code]", ErrInvalidArgument)
	}
	m, err := d.ArrayLen()
	if err != nil {
		return nil, err
	}
	if m < 2 {
		return nil, fmt.Errorf("%w: error code needs [category, code]", ErrInvalidArgument)
	}
	cat, err := d.Int()
	if err != nil {
		return nil, err
	}
	code, err := d.Int()
	if err != nil {
		return nil, err
	}
	for i := 2; i < m; i++ {
		if err := d.Skip(); err != nil {
			return nil, err
		}
	}
	e := &Error{Category: int(cat), Code: int(code)}
	if n >= 2 && d.Peek() == KindRaw {
		e.Message, _ = d.String()
	}
	return e, nil
}
