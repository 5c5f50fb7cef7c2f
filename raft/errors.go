package raft

import "errors"

// Sentinels returned by Node. Callers match them with errors.Is; the wrapped error
// carries the detail.
var (
	// ErrStopped: the node is not running (not started yet, or stopped).
	ErrStopped = errors.New("raft: node is not running")
	// ErrNoLeader: no leader was known before the context ended. Nothing was applied.
	ErrNoLeader = errors.New("raft: no leader")
	// ErrNotLeader: an operation that only the leader performs reached a node that does
	// not lead (any more). Nothing was applied; retrying on the new leader is safe.
	ErrNotLeader = errors.New("raft: not the leader")
	// ErrIndeterminate: the command was handed to the log, but its outcome is unknown
	// (leadership was lost, the leader's connection broke, or the context ended while
	// waiting). It may or may not be applied.
	ErrIndeterminate = errors.New("raft: outcome unknown, the command may or may not have been applied")
	// ErrTooLarge: a command over Config.MaxCommandSize. Nothing was applied.
	ErrTooLarge = errors.New("raft: command too large")
	// ErrUnknownMethod: LeaderCall named a method the leader has no handler for.
	ErrUnknownMethod = errors.New("raft: unknown leader method")
	// ErrRemote: a leader handler failed; the message is the handler's error text.
	ErrRemote = errors.New("raft: leader handler failed")
	// ErrBadSnapshot: a backup file is not one SaveSnapshot wrote, or is damaged.
	ErrBadSnapshot = errors.New("raft: not a valid snapshot")
	// ErrNotMember: the server id is not in the cluster's configuration.
	ErrNotMember = errors.New("raft: no such member")
)
