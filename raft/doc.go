// Package raft is the consensus layer of a cocaine cluster: hashicorp/raft with its log
// in hashicorp/raft-wal (one fdatasync per append), one group per cluster. It
// replicates opaque commands into an FSM and knows nothing of keys, apps or services.
//
// # The caller's loop
//
//	mux := raft.NewMux()                       // one FSM made of tagged parts
//	mux.Register('u', unicornStore)            // each part sees only its commands
//	n, err := raft.New(cfg, mux, log)          // validates; starts nothing
//	n.HandleLeader("x.keepalive", h)           // before Run: served on the leader
//	go n.Run(ctx)                              // until ctx ends; then leave, stop
//	<-n.Started()
//	res, err := n.Sub('u').Propose(ctx, cmd)   // replicated, applied here too
//	idx, err := n.ReadIndex(ctx, false)        // then n.WaitApplied(ctx, idx): read local
//
// A server with no state bootstraps a one-server cluster when Config.Bootstrap is set;
// otherwise it waits until a member adds it (Join, forwarded to the leader). The first
// Config.Voters servers become voters, later ones non-voters that hold a full replica.
// The leader keeps the configuration healthy: it promotes a healthy non-voter while
// voters are missing, replaces a voter dead for Config.DeadServerTimeout by a non-voter
// and removes dead non-voters. A server that finds itself out of the configuration, or
// without a leader for a few election timeouts, asks to join again through the servers
// it knows; a restart therefore needs nothing but its data dir.
//
// # Writes
//
// Propose is served by the leader: followers forward the command over the peer
// protocol, which shares the raft port with hashicorp's transport (the first byte of a
// connection tells them apart). The leader packs every proposal queued while raft
// writes the previous entry into one log entry (an envelope, decoded by the FSM adapter),
// so concurrent writes share one fsync per server. Propose returns the FSM's result
// once the command is applied on the calling server too. After an entry with commands
// commits, the leader tells each follower the new commit index at once, in an
// AppendEntries without entries (a commit notice: no log entry, no fsync), instead of
// letting it wait for CommitTimeout; notice.go says why that is safe.
//
// # Reads
//
// ReadIndex gives the index a read must wait for with WaitApplied before it reads local
// state: the leader's commit index (lowered to the last entry carrying commands, which
// is the same state), so a read sees every write acknowledged anywhere before it. With
// linearizable set the leader also confirms its leadership with a quorum (concurrent
// callers share one round) so a deposed leader cannot answer. The leader serves only
// once the entry that starts its term is applied.
//
// # Errors
//
// ErrNoLeader and ErrNotLeader mean nothing was applied; ErrIndeterminate that the
// command may or may not be; ErrTooLarge, ErrStopped, ErrNotMember, ErrBadSnapshot and
// ErrUnknownMethod/ErrRemote (LeaderCall) say what they say. Callers match with
// errors.Is.
//
// # The data dir
//
// Config.Dir holds LOCK (a second process on the same dir fails at once), wal/ (the log
// and the term and vote) and the snapshots. A raft.db left by a version that used
// raft-boltdb is copied into wal/ at start and kept as raft.db.migrated; logstore.go
// says why the WAL and how the copy survives a crash.
//
// # Snapshots and backups
//
// Raft snapshots the FSM every SnapshotInterval once SnapshotThreshold entries were
// logged, and truncates the log but TrailingLogs. SaveSnapshot writes a checksummed
// backup of a server's replica; RestoreSnapshot sends one to the leader, which installs
// it on every server (the cluster keeps its own membership).
//
// All methods of Node are safe for concurrent use. Run returns only when every
// goroutine, connection and file it opened is closed (save one goroutine left waiting
// should hashicorp drop an answer at shutdown: the end of Run says why). It closes its
// connections to other servers first, so requests in flight to a server that does not
// answer (a partition that drops packets) end at once, not at the transport's timeout.
package raft
