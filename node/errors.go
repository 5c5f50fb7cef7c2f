package node

import (
	"errors"
	"syscall"

	"github.com/cocaine/cocaine/rpc"
)

// Sentinel errors of the node, with the original's codes (plugins.md §2.16). Every error
// the node puts on the wire wraps one of them (or an *rpc.Error from a peer), so clients
// match them with errors.Is on either side of the wire.
var (
	// node category (0x51FF)

	// ErrDeadline: an event expired in the queue before a worker took it.
	ErrDeadline = rpc.NewError(rpc.CategoryNode, 1, "the event has expired in the queue")
	// ErrResource: the node could not get a resource (a socket, a port, a directory).
	ErrResource = rpc.NewError(rpc.CategoryNode, 2, "resource error")
	// ErrTimeout: a request outlived its request timeout.
	ErrTimeout = rpc.NewError(rpc.CategoryNode, 3, "request timed out")
	// ErrAlreadyStarted: start_app of an app that is in the table (in any state).
	ErrAlreadyStarted = rpc.NewError(rpc.CategoryNode, 5, "app is already started")
	// ErrNotRunning: the app is not in the table.
	ErrNotRunning = rpc.NewError(rpc.CategoryNode, 6, "app is not running")
	// ErrSpool: the app's archive could not be unpacked.
	ErrSpool = rpc.NewError(rpc.CategoryNode, 7, "spool error")
	// ErrPublish: the app's service could not be published.
	ErrPublish = rpc.NewError(rpc.CategoryNode, 8, "publish error")

	// overseer category (0x52FF)

	// ErrQueueFull: the app's queue holds queue-limit events already.
	ErrQueueFull = rpc.NewError(rpc.CategoryOverseer, 1, "queue is full")
	// ErrPoolFull: a spawn beyond pool-limit was asked for.
	ErrPoolFull = rpc.NewError(rpc.CategoryOverseer, 2, "pool is full")

	// slave category (0x53FF): why a worker ended

	ErrSpawnTimeout     = rpc.NewError(rpc.CategorySlave, 1, "spawn timed out")
	ErrLocatorNotFound  = rpc.NewError(rpc.CategorySlave, 2, "locator not found")
	ErrEmptyLocator     = rpc.NewError(rpc.CategorySlave, 3, "locator has no endpoints")
	ErrHandshakeTimeout = rpc.NewError(rpc.CategorySlave, 4, "handshake timed out")
	ErrActivate         = rpc.NewError(rpc.CategorySlave, 5, "worker could not be activated")
	ErrSealTimeout      = rpc.NewError(rpc.CategorySlave, 6, "seal timed out")
	ErrTerminateTimeout = rpc.NewError(rpc.CategorySlave, 7, "terminate timed out")
	ErrHeartbeatTimeout = rpc.NewError(rpc.CategorySlave, 8, "heartbeat timed out")
	ErrInvalidState     = rpc.NewError(rpc.CategorySlave, 9, "invalid worker state")
	ErrControlIPC       = rpc.NewError(rpc.CategorySlave, 10, "worker control channel failed")
	ErrShuttingDown     = rpc.NewError(rpc.CategorySlave, 11, "app is shutting down")
	ErrCommittedSuicide = rpc.NewError(rpc.CategorySlave, 12, "worker terminated itself")
	ErrIdle             = rpc.NewError(rpc.CategorySlave, 13, "worker is idle")
	ErrSealing          = rpc.NewError(rpc.CategorySlave, 14, "worker is sealing")

	// worker category (42)

	// ErrEventNotFound: the worker has no handler for the event.
	ErrEventNotFound = rpc.NewError(rpc.CategoryWorker, 1, "event not found")
)

// Errors without a code of their own in the original, which reported them as generic
// errors (errc::invalid_argument and friends).
var (
	// ErrInvalidManifest: a manifest that cannot run (no slave, wrong types).
	ErrInvalidManifest = errors.New("node: invalid manifest")
	// ErrInvalidProfile: a profile field of the wrong type or out of range.
	ErrInvalidProfile = errors.New("node: invalid profile")
	// ErrInvalidArgs: isolate arguments the isolate does not accept.
	ErrInvalidArgs = errors.New("node: invalid isolate arguments")
	// ErrInvalidName: an app name that cannot name a directory, a socket and a service.
	ErrInvalidName = errors.New("node: invalid app name")
	// ErrUnknownIsolate: a profile names an isolate type no factory provides.
	ErrUnknownIsolate = errors.New("node: unknown isolate type")
	// ErrNotFound: a manifest, profile, archive or runlist is not in storage. Storage
	// implementations given to the node wrap it.
	ErrNotFound = errors.New("node: not found in storage")
	// ErrBrokenPipe: the app stopped while a client still used its service.
	ErrBrokenPipe = errors.New("node: app is stopped")
	// ErrClientGone: the client of a request disconnected or revoked its channel.
	ErrClientGone = errors.New("node: client disconnected")
)

// errorTable maps the errors without a node code to generic codes, as the original sent
// them; the *rpc.Error sentinels above carry their own codes.
var errorTable = rpc.ErrorTable{
	{Err: ErrInvalidManifest, Category: rpc.CategoryGeneric, Code: int(syscall.EINVAL)},
	{Err: ErrInvalidProfile, Category: rpc.CategoryGeneric, Code: int(syscall.EINVAL)},
	{Err: ErrInvalidArgs, Category: rpc.CategoryGeneric, Code: int(syscall.EINVAL)},
	{Err: ErrInvalidName, Category: rpc.CategoryGeneric, Code: int(syscall.EINVAL)},
	{Err: ErrUnknownIsolate, Category: rpc.CategoryPlugins, Code: 1}, // component_not_found
	{Err: ErrNotFound, Category: rpc.CategoryGeneric, Code: int(syscall.ENOENT)},
	{Err: ErrBrokenPipe, Category: rpc.CategoryGeneric, Code: int(syscall.EPIPE)},
	{Err: ErrClientGone, Category: rpc.CategoryGeneric, Code: int(syscall.ECONNRESET)},
}

// wire converts err for a reply.
func wire(err error) *rpc.Error { return errorTable.Wire(err) }
