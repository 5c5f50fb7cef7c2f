package raft

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// Config configures a Node. Pass it by value to New; DefaultConfig gives every default.
type Config struct {
	// ID identifies this server in the cluster for all time (the node's uuid).
	ID string
	// Dir holds the raft log and stable store (wal/) and the snapshots.
	Dir string
	// Bind is the host:port the raft port listens on, unless Listener is set.
	Bind string
	// Advertise is the host:port other servers dial; Bind (or Listener's address) if
	// empty. It must not be an unspecified address.
	Advertise string
	// Listener, if set, is used instead of binding Bind; the Node closes it.
	Listener net.Listener
	// Dial opens connections to other servers (raft traffic and forwarded requests).
	// A plain TCP dial if nil; tests inject faults here.
	Dial func(ctx context.Context, addr string) (net.Conn, error)

	// Bootstrap makes a server with no state on disk found a new single-server cluster.
	// A server that is to join an existing cluster must not bootstrap.
	Bootstrap bool
	// Peers are raft addresses of other servers, tried (besides those of the last known
	// configuration) when this server must (re)join: after a restart that finds it
	// removed from the cluster, or after a long time without a leader.
	Peers []string

	// Voters is how many voters the cluster keeps: the first servers to join become
	// voters up to this count, later ones non-voters (which still replicate). 1, 3, 5
	// or 7.
	Voters int
	// DeadServerTimeout: a server whose heartbeats have failed for this long is dead. A
	// dead voter is replaced by a healthy non-voter (promoted) and removed; a dead
	// non-voter is removed.
	DeadServerTimeout time.Duration
	// LeaveOnShutdown makes Run leave the cluster when its context ends (handing over
	// leadership first), so the others do not wait DeadServerTimeout. Turn it off for a
	// restart that should keep the server's place.
	LeaveOnShutdown bool

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration

	// SnapshotInterval and SnapshotThreshold: raft checks every interval whether at least
	// threshold entries were logged since the last snapshot, and takes one if so.
	// TrailingLogs entries are kept after a snapshot, so a slightly lagging follower
	// catches up from the log instead of a whole snapshot.
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// SnapshotRetain is how many snapshots stay on disk.
	SnapshotRetain int

	// MaxBatch bounds the commands packed into one log entry, MaxBatchBytes their size:
	// concurrent proposals share an entry (one fsync), which is where throughput
	// comes from.
	MaxBatch      int
	MaxBatchBytes int
	// MaxCommandSize bounds one command.
	MaxCommandSize int
	// MaxSnapshotSize bounds a backup accepted by RestoreSnapshot.
	MaxSnapshotSize int64
}

// DefaultConfig has every default; ID, Dir and Bind remain to be set.
func DefaultConfig() Config {
	return Config{
		Voters:             3,
		DeadServerTimeout:  30 * time.Second,
		LeaveOnShutdown:    true,
		HeartbeatTimeout:   1000 * time.Millisecond,
		ElectionTimeout:    1000 * time.Millisecond,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      50 * time.Millisecond,
		SnapshotInterval:   30 * time.Second,
		SnapshotThreshold:  8192,
		TrailingLogs:       10240,
		SnapshotRetain:     2,
		MaxBatch:           512,
		MaxBatchBytes:      1 << 20,
		MaxCommandSize:     8 << 20,
		MaxSnapshotSize:    1 << 30,
	}
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.ID == "" {
		add("raft: id is required")
	}
	if c.Dir == "" {
		add("raft: dir is required")
	}
	if c.Listener == nil {
		if _, _, err := net.SplitHostPort(c.Bind); err != nil {
			add("raft: bind %q is not host:port: %v", c.Bind, err)
		}
	}
	if c.Advertise != "" {
		host, _, err := net.SplitHostPort(c.Advertise)
		if err != nil {
			add("raft: advertise %q is not host:port: %v", c.Advertise, err)
		} else if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			add("raft: advertise %q is an unspecified address; other servers cannot dial it", c.Advertise)
		}
	}
	for _, p := range c.Peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			add("raft: peer %q is not host:port: %v", p, err)
		}
	}
	switch c.Voters {
	case 1, 3, 5, 7:
	default:
		add("raft: voters must be 1, 3, 5 or 7, got %d", c.Voters)
	}
	if c.HeartbeatTimeout < 5*time.Millisecond {
		add("raft: heartbeat timeout %s is too short (at least 5ms)", c.HeartbeatTimeout)
	}
	if c.ElectionTimeout < c.HeartbeatTimeout {
		add("raft: election timeout (%s) must be equal or greater than heartbeat timeout (%s)", c.ElectionTimeout, c.HeartbeatTimeout)
	}
	if c.LeaderLeaseTimeout < 5*time.Millisecond || c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		add("raft: leader lease timeout (%s) must be at least 5ms and at most the heartbeat timeout (%s)", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if c.CommitTimeout < time.Millisecond {
		add("raft: commit timeout %s is too short (at least 1ms)", c.CommitTimeout)
	}
	if c.DeadServerTimeout < c.ElectionTimeout {
		add("raft: dead server timeout (%s) must be at least the election timeout (%s)", c.DeadServerTimeout, c.ElectionTimeout)
	}
	if c.SnapshotInterval < 5*time.Millisecond {
		add("raft: snapshot interval %s is too short (at least 5ms)", c.SnapshotInterval)
	}
	if c.SnapshotThreshold == 0 {
		add("raft: snapshot threshold must be positive")
	}
	if c.SnapshotRetain < 1 {
		add("raft: snapshot retain must be at least 1, got %d", c.SnapshotRetain)
	}
	if c.MaxBatch < 1 {
		add("raft: max batch must be at least 1, got %d", c.MaxBatch)
	}
	if c.MaxBatchBytes < 1 {
		add("raft: max batch bytes must be positive, got %d", c.MaxBatchBytes)
	}
	if c.MaxCommandSize < 1 || c.MaxCommandSize > maxFrame-frameOverhead {
		add("raft: max command size must be in [1, %d], got %d", maxFrame-frameOverhead, c.MaxCommandSize)
	}
	if c.MaxSnapshotSize < 1 || c.MaxSnapshotSize > maxFrame-frameOverhead {
		add("raft: max snapshot size must be in [1, %d], got %d", maxFrame-frameOverhead, c.MaxSnapshotSize)
	}
	return errors.Join(errs...)
}
