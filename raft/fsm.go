package raft

import "io"

// FSM is the replicated state machine a Node drives. The Node calls Apply, Snapshot and
// Restore from one goroutine, never concurrently with each other; Snapshot.Persist runs
// on another goroutine, concurrently with later Applies, so a Snapshot must capture the
// state it persists when Snapshot returns (a copy, or an immutable view).
type FSM interface {
	// Apply applies one committed command, at the raft log index given. It must be
	// deterministic: every replica applies the same commands in the same order and
	// must reach the same state, so it reads no clock, no random source and no local
	// file. The result goes back to whoever proposed the command (see Node.Propose); a
	// command that cannot be applied (undecodable, failing a check) leaves the state
	// unchanged and says so in its result. Apply must not panic on any input.
	Apply(index uint64, cmd []byte) []byte

	// Snapshot captures the current state for Persist.
	Snapshot() (Snapshot, error)

	// Restore replaces the whole state by the one a Snapshot persisted. index is the
	// raft index of the last command that snapshot includes. Restore must reject
	// malformed input with an error, leaving the previous state in place, and never
	// panic.
	Restore(r io.Reader, index uint64) error
}

// Snapshot is a point-in-time state of an FSM.
type Snapshot interface {
	// Persist writes the state to w. It may run concurrently with FSM.Apply.
	Persist(w io.Writer) error
	// Release is called when the Node is done with the snapshot, whether or not
	// Persist ran or succeeded.
	Release()
}
