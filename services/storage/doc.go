// Package storage implements Cocaine's storage service (protocol.md §6.3): blobs addressed
// by (collection, key), each carrying a set of tags that find() intersects.
//
// # Backends
//
// The service serves any Backend. Two implement it:
//
//   - Bolt keeps everything in one bbolt file on this host. Every write is an fsynced
//     transaction. Values may be up to BoltOptions.MaxValueSize (DefaultMaxValueSize,
//     64 MiB, by default), enough for app archives.
//
//   - Replicated keeps everything in a ReplicatedState, an in-memory store that the raft
//     layer drives as its FSM, so every host holds a full replica. Writes and removes are
//     proposed through a Consensus and return once the cluster has committed them and this
//     host has applied them. Values up to ReplicatedConfig.MaxValueSize
//     (DefaultReplicatedValueSize, 1 MiB, by default, and never more than
//     MaxReplicatedValueSize, 4 MiB) travel through the raft log and live in memory on
//     every host. Larger ones, up to BlobsConfig.MaxBlobSize (DefaultMaxBlobSize, 256
//     MiB), live in the hosts' blob stores (Blobs), and the state keeps a reference to
//     each; without a blob store they fail with ErrTooLarge before anything is proposed.
//
// # The blob store
//
// Each host keeps blobs as files named by the SHA-256 of their bytes, written atomically
// and checked against their name on every read. A write over the inline limit stores
// the value on the receiving host first, then proposes a reference (digest, size, and
// the hosts holding the blob, at first just this one); references behave as values for
// tags, find and remove. A read of a reference serves the local copy, or fetches the blob
// from a holder through the blobs service (BlobsGraph), checks it and keeps it. Every
// host fetches each referenced blob in the background and records itself as a holder
// through the log, so that a holder's death loses nothing, and deletes the blobs no key
// refers to (never one whose write is still being proposed). A blob no reachable holder
// can send fails with ErrBlobUnavailable, within the caller's ctx and the store's
// timeouts.
//
// Both backends apply the same name rules (Validate, ValidateTags: names of 1 to
// MaxNameSize bytes without NUL, at most MaxTags distinct tags per key) and the same
// semantics: a write replaces both value and tags, removing a missing key succeeds, and
// find returns the keys carrying every tag, sorted bytewise, never nil.
//
// # Consistency of replicated reads
//
// Replicated.Read and Replicated.Find ask the Consensus for a read index
// (ReadIndex(ctx, false)), wait until this host has applied it (WaitApplied), then read
// the local replica. A read therefore sees every write acknowledged anywhere in the
// cluster before the read began, and a host always reads its own writes, since Propose
// returns only after the local apply. The read index is not confirmed with a quorum, so
// during a partition a deposed leader that has not yet noticed may give a read index
// that misses the newest writes: reads are not linearizable. Every host serves reads from
// its own replica, voter or not; none waits for a quorum round.
//
// A replicated write whose Propose fails (the caller's deadline, a leader change) may or
// may not have been applied: the error says so only through the raft layer's sentinels.
// Every error the backend decides itself (an invalid name, a value too large, a closed
// backend, a context done before proposing) means nothing was proposed. Writes and removes
// are idempotent, so a caller may simply retry.
//
// # Replicated formats
//
// Commands, Apply results and snapshots are MessagePack, written with rpc's encoders and
// read with rpc.Decoder; each carries a version so that a later build can change them.
// They are described at the top of replicated_codec.go. Version 2 of commands and
// snapshots adds blob references; what has no blob is still written in version 1, and
// version-1 snapshots restore.
package storage
