package main

import (
	"fmt"
	"syscall"

	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/services/cluster"
)

// categoryNames name the Cocaine error categories in messages.
var categoryNames = map[int]string{
	rpc.CategorySystem:      "system",
	rpc.CategoryTransport:   "transport",
	rpc.CategoryDispatch:    "dispatch",
	rpc.CategoryPlugins:     "plugins",
	rpc.CategorySecurity:    "security",
	rpc.CategoryLocator:     "locator",
	rpc.CategoryUnicorn:     "unicorn",
	rpc.CategoryGeneric:     "generic",
	rpc.CategoryProtocol:    "protocol",
	rpc.CategoryWorker:      "worker",
	rpc.CategoryWorkerUser:  "worker-user",
	rpc.CategoryNode:        "node",
	rpc.CategoryOverseer:    "overseer",
	rpc.CategorySlave:       "slave",
	cluster.CategoryCluster: "cluster",
}

// codeNames name the codes of the categories that have a fixed list (plugins.md §1.7,
// §2.16; protocol.md §4.3). Generic and system codes are errno values.
var codeNames = map[int][]string{
	rpc.CategoryTransport: {1: "frame_format_error", 2: "hpack_error", 3: "insufficient_bytes", 4: "parse_error"},
	rpc.CategoryDispatch: {1: "duplicate_slot", 2: "invalid_argument", 3: "not_connected", 4: "revoked_channel",
		5: "slot_not_found", 6: "unbound_dispatch", 7: "uncaught_error"},
	rpc.CategoryPlugins:  {1: "component_not_found"},
	rpc.CategoryLocator:  {1: "service_not_available", 2: "routing_storage_error", 3: "missing_version_error"},
	rpc.CategoryProtocol: {1: "closed_upstream"},
	rpc.CategoryUnicorn: {1: "child_not_allowed", 2: "invalid_type", 3: "invalid_value", 4: "unknown_error",
		5: "invalid_node_name", 6: "invalid_path", 7: "version_not_allowed", 8: "no_node", 9: "node_exists",
		10: "connection_loss", 11: "backend_internal_error", 12: "compacted", 13: "lease_not_found"},
	rpc.CategoryWorker: {1: "event_not_found", 100: "handler_panicked"},
	rpc.CategoryNode: {1: "deadline_error", 2: "resource_error", 3: "timeout_error", 4: "invalid_assignment",
		5: "already_started", 6: "not_running", 7: "uncaught_spool_error", 8: "uncaught_publish_error"},
	rpc.CategoryOverseer: {1: "queue_is_full", 2: "pool_is_full"},
	rpc.CategorySlave: {1: "spawn_timeout", 2: "locator_not_found", 3: "empty_locator_endpoints",
		4: "activate_timeout", 5: "unknown_activate_error", 6: "seal_timeout", 7: "terminate_timeout",
		8: "heartbeat_timeout", 9: "invalid_state", 10: "control_ipc_error", 11: "overseer_shutdowning",
		12: "committed_suicide", 13: "slave_idle", 14: "slave_is_sealing"},
	cluster.CategoryCluster: {1: "no_leader", 2: "not_member", 3: "bad_snapshot", 4: "indeterminate",
		5: "stopping", 6: "snapshot_too_large"},
}

// errorName is "category.code" for messages: "node.not_running", "generic.ENOENT".
func errorName(category, code int) string {
	cat, ok := categoryNames[category]
	if !ok {
		cat = fmt.Sprintf("category-%d", category)
	}
	if category == rpc.CategoryGeneric || category == rpc.CategorySystem {
		if name := errnoName(syscall.Errno(code)); name != "" {
			return cat + "." + name
		}
	}
	if names := codeNames[category]; code >= 0 && code < len(names) && names[code] != "" {
		return cat + "." + names[code]
	}
	return fmt.Sprintf("%s.%d", cat, code)
}

// errnoName is the symbolic name of the errno values Cocaine services send.
func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.ENOENT:
		return "ENOENT"
	case syscall.EINVAL:
		return "EINVAL"
	case syscall.EEXIST:
		return "EEXIST"
	case syscall.EACCES:
		return "EACCES"
	case syscall.EPERM:
		return "EPERM"
	case syscall.EFBIG:
		return "EFBIG"
	case syscall.EAGAIN:
		return "EAGAIN"
	case syscall.EIO:
		return "EIO"
	case syscall.EPIPE:
		return "EPIPE"
	case syscall.ESHUTDOWN:
		return "ESHUTDOWN"
	case syscall.ECONNRESET:
		return "ECONNRESET"
	case syscall.ETIMEDOUT:
		return "ETIMEDOUT"
	case syscall.ENOSPC:
		return "ENOSPC"
	}
	return ""
}

// notFound is an error the tool itself finds, in the form storage reports a missing key
// (generic ENOENT), so that "not there" reads the same whether storage or the tool saw
// it first.
func notFound(format string, args ...any) error {
	return &rpc.Error{Category: rpc.CategoryGeneric, Code: int(syscall.ENOENT), Message: fmt.Sprintf(format, args...)}
}

// toolError is a failure the tool finds that has no Cocaine code: exit 128, as the
// original's ToolsError.
type toolError struct{ msg string }

func (e toolError) Error() string { return e.msg }

func toolErrorf(format string, args ...any) error { return toolError{fmt.Sprintf(format, args...)} }
