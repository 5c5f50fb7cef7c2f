package unicorn

import "context"

// Consensus is what unicorn needs from the raft layer. *raft.Sub satisfies it; tests may
// use a single-process implementation that applies proposals to the Store directly.
// Every method is safe for concurrent use.
type Consensus interface {
	// Propose replicates cmd through the log and returns the FSM's result for it, once
	// the command is applied on this host too (so a read here right after sees it).
	// Followers forward the command to the leader. An error means the command may or may
	// not have been applied (the raft package's sentinels tell which).
	Propose(ctx context.Context, cmd []byte) ([]byte, error)

	// ReadIndex returns a log index that covers every write acknowledged anywhere in the
	// cluster before the call. With linearizable set the leader first confirms with a
	// quorum that it still leads. Wait for it with WaitApplied before reading local
	// state.
	ReadIndex(ctx context.Context, linearizable bool) (uint64, error)

	// WaitApplied blocks until the local FSM has applied index, or ctx is done.
	WaitApplied(ctx context.Context, index uint64) error

	// Leadership reports whether this host leads now, and a channel closed at the next
	// change of that answer.
	Leadership() (leader bool, changed <-chan struct{})

	// LeaderCall sends payload to the handler registered under method on the current
	// leader (locally when this host leads) and returns its reply. It carries requests
	// that must reach the leader but not the log, such as lease keepalives.
	LeaderCall(ctx context.Context, method string, payload []byte) ([]byte, error)
}

// LeaderHandler serves a LeaderCall on the leader.
type LeaderHandler func(ctx context.Context, payload []byte) ([]byte, error)
