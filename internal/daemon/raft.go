package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cocaine/cocaine/raft"
	"github.com/cocaine/cocaine/services/cluster"
)

// DefaultRaftPort is the raft port unless network.pinned.raft says otherwise.
const DefaultRaftPort = 10052

// RaftConfig configures this host's place in the Raft group.
type RaftConfig struct {
	// Join lists locator endpoints (host:port; port 10053 if omitted) of existing
	// members. A host with no raft state joins the cluster through the first that
	// answers; empty: a host with no state bootstraps a new single-host cluster.
	Join []string `json:"join,omitempty"`
	// Advertise is the host:port other hosts dial for raft; the first advertised
	// address of the node and the raft port if empty.
	Advertise string `json:"advertise,omitempty"`
	// Voters is how many voters the cluster keeps (1, 3, 5 or 7): the first hosts
	// become voters, later ones non-voters that still hold a full replica.
	Voters int `json:"voters,omitempty"`
	// DeadServerTimeout: a host unreachable for this long is replaced (voter) or
	// removed (non-voter).
	DeadServerTimeout Duration `json:"dead_server_timeout,omitempty"`
	// LeaveOnShutdown: leave the cluster on SIGINT/SIGTERM (default true).
	LeaveOnShutdown *bool `json:"leave_on_shutdown,omitempty"`

	HeartbeatTimeout   Duration `json:"heartbeat_timeout,omitempty"`
	ElectionTimeout    Duration `json:"election_timeout,omitempty"`
	LeaderLeaseTimeout Duration `json:"leader_lease_timeout,omitempty"`
	SnapshotInterval   Duration `json:"snapshot_interval,omitempty"`
	SnapshotThreshold  uint64   `json:"snapshot_threshold,omitempty"`
	TrailingLogs       uint64   `json:"trailing_logs,omitempty"`
	// MaxSnapshotSize bounds a backup given to `cocaine-tool cluster snapshot restore`.
	MaxSnapshotSize int64 `json:"max_snapshot_size,omitempty"`
}

// raftConfig fills a raft.Config from c over the raft package's defaults.
func (c RaftConfig) raftConfig() raft.Config {
	r := raft.DefaultConfig()
	if c.Voters != 0 {
		r.Voters = c.Voters
	}
	set := func(dst *time.Duration, v Duration) {
		if v != 0 {
			*dst = time.Duration(v)
		}
	}
	set(&r.DeadServerTimeout, c.DeadServerTimeout)
	set(&r.HeartbeatTimeout, c.HeartbeatTimeout)
	set(&r.ElectionTimeout, c.ElectionTimeout)
	set(&r.LeaderLeaseTimeout, c.LeaderLeaseTimeout)
	set(&r.SnapshotInterval, c.SnapshotInterval)
	if c.SnapshotThreshold != 0 {
		r.SnapshotThreshold = c.SnapshotThreshold
	}
	if c.TrailingLogs != 0 {
		r.TrailingLogs = c.TrailingLogs
	}
	if c.MaxSnapshotSize != 0 {
		r.MaxSnapshotSize = c.MaxSnapshotSize
	}
	if c.LeaveOnShutdown != nil {
		r.LeaveOnShutdown = *c.LeaveOnShutdown
	}
	return r
}

// clusterRaft adapts *raft.Node to the cluster service, mapping its sentinels.
type clusterRaft struct{ n *raft.Node }

func clusterError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNoLeader), errors.Is(err, raft.ErrNotLeader):
		return fmt.Errorf("%w: %v", cluster.ErrNoLeader, err)
	case errors.Is(err, raft.ErrNotMember):
		return fmt.Errorf("%w: %v", cluster.ErrNotMember, err)
	case errors.Is(err, raft.ErrBadSnapshot):
		return fmt.Errorf("%w: %v", cluster.ErrBadSnapshot, err)
	case errors.Is(err, raft.ErrIndeterminate):
		return fmt.Errorf("%w: %v", cluster.ErrIndeterminate, err)
	case errors.Is(err, raft.ErrStopped):
		return fmt.Errorf("%w: %v", cluster.ErrStopped, err)
	}
	return err
}

func (c clusterRaft) Members(ctx context.Context) ([]cluster.Member, error) {
	ms, err := c.n.Members(ctx)
	if err != nil {
		return nil, clusterError(err)
	}
	out := make([]cluster.Member, len(ms))
	for i, m := range ms {
		out[i] = cluster.Member{ID: m.ID, Address: m.Address, Voter: m.Voter, Leader: m.Leader, Healthy: m.Healthy, FailingSince: m.FailingSince}
	}
	return out, nil
}

func (c clusterRaft) Status() cluster.Status {
	id, addr := c.n.Leader()
	leader, _ := c.n.Leadership()
	return cluster.Status{ID: c.n.ID(), Address: c.n.Addr(), LeaderID: id, LeaderAddress: addr, Leader: leader, AppliedIndex: c.n.AppliedIndex()}
}

func (c clusterRaft) Join(ctx context.Context, id, addr string) error {
	return clusterError(c.n.Join(ctx, id, addr))
}

func (c clusterRaft) Leave(ctx context.Context) error { return clusterError(c.n.Leave(ctx)) }

func (c clusterRaft) Remove(ctx context.Context, id string) error {
	return clusterError(c.n.Remove(ctx, id))
}

func (c clusterRaft) SaveSnapshot(ctx context.Context, w io.Writer) error {
	return clusterError(c.n.SaveSnapshot(ctx, w))
}

func (c clusterRaft) RestoreSnapshot(ctx context.Context, r io.Reader) error {
	return clusterError(c.n.RestoreSnapshot(ctx, r))
}
