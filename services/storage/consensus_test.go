package storage

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
)

// Single-process implementations of Consensus for the tests.

// localConsensus is a cluster of one: Propose applies the command to the state at once,
// under a lock, so that commands are serialized as a log would serialize them. It keeps
// the log, so a test can replay it into another state.
type localConsensus struct {
	state *ReplicatedState

	// mu guards the following fields.
	mu    sync.Mutex
	index uint64   // the last applied index
	log   [][]byte // every command proposed, log[i] at index i+1
	reads int      // ReadIndex calls
}

var _ Consensus = (*localConsensus)(nil)

func newLocalConsensus(state *ReplicatedState) *localConsensus {
	return &localConsensus{state: state}
}

func (c *localConsensus) Propose(ctx context.Context, cmd []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.index++
	// A raft log keeps its own copy of what it was given.
	cmd = bytes.Clone(cmd)
	c.log = append(c.log, cmd)
	return c.state.Apply(c.index, cmd), nil
}

func (c *localConsensus) ReadIndex(ctx context.Context, _ bool) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	return c.index, nil
}

func (c *localConsensus) WaitApplied(ctx context.Context, index uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if index > c.index {
		return fmt.Errorf("test consensus: index %d is past the log's end, %d", index, c.index)
	}
	return nil
}

// commands returns a copy of the log.
func (c *localConsensus) commands() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.log...)
}

// readIndexCalls returns how many times ReadIndex was called.
func (c *localConsensus) readIndexCalls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// laggingConsensus commits proposals without applying them on this host, as a follower
// that has not caught up: the commands wait in pending until WaitApplied (or catchUp)
// applies them. Its Propose does not wait for the local apply, which a real Consensus
// does; tests use it to see that reads wait for the read index.
type laggingConsensus struct {
	state *ReplicatedState

	// mu guards the following fields.
	mu      sync.Mutex
	applied uint64
	pending [][]byte // committed, not yet applied: index applied+1 onwards
}

func (c *laggingConsensus) Propose(_ context.Context, cmd []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = append(c.pending, bytes.Clone(cmd))
	return appendAppliedResult(nil), nil
}

func (c *laggingConsensus) ReadIndex(context.Context, bool) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.applied + uint64(len(c.pending)), nil
}

func (c *laggingConsensus) WaitApplied(_ context.Context, index uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.applied < index && len(c.pending) > 0 {
		c.applied++
		c.state.Apply(c.applied, c.pending[0])
		c.pending = c.pending[1:]
	}
	return nil
}

// stalledConsensus never makes progress: every call reports on entered, then waits for
// its ctx and returns the ctx's error, as a raft group without a leader would. With
// release set, a cancelled call reports on cancelled and holds on until release is
// closed, so a test can see what waits for it.
type stalledConsensus struct {
	entered   chan string   // the method name; unbuffered, so the test meets each call
	cancelled chan struct{} // unbuffered, as entered
	release   chan struct{}
}

func (c stalledConsensus) stall(ctx context.Context, method string) error {
	c.entered <- method
	<-ctx.Done()
	if c.release != nil {
		c.cancelled <- struct{}{}
		<-c.release
	}
	return ctx.Err()
}

func (c stalledConsensus) Propose(ctx context.Context, _ []byte) ([]byte, error) {
	return nil, c.stall(ctx, "Propose")
}

func (c stalledConsensus) ReadIndex(ctx context.Context, _ bool) (uint64, error) {
	return 0, c.stall(ctx, "ReadIndex")
}

func (c stalledConsensus) WaitApplied(ctx context.Context, _ uint64) error {
	return c.stall(ctx, "WaitApplied")
}

// fixedConsensus answers every call with the same result and errors.
type fixedConsensus struct {
	result               []byte
	proposeErr, readErr  error
	waitErr              error
	readIndex, waitIndex uint64
}

func (c fixedConsensus) Propose(context.Context, []byte) ([]byte, error) {
	return c.result, c.proposeErr
}

func (c fixedConsensus) ReadIndex(context.Context, bool) (uint64, error) {
	return c.readIndex, c.readErr
}

func (c fixedConsensus) WaitApplied(context.Context, uint64) error { return c.waitErr }

// newTestReplicated returns a backend over a fresh state with cfg and a localConsensus,
// closed when the test ends.
func newTestReplicated(t testing.TB, cfg ReplicatedConfig) (*Replicated, *ReplicatedState, *localConsensus) {
	t.Helper()
	state, err := NewReplicatedState(cfg)
	if err != nil {
		t.Fatalf("NewReplicatedState: %v", err)
	}
	c := newLocalConsensus(state)
	r := NewReplicated(state, c, nil)
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r, state, c
}
