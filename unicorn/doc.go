// Package unicorn is the cluster's replicated configuration store: Cocaine's unicorn API
// and semantics (plugins.md §1; originally over ZooKeeper), kept in memory and
// replicated through Raft as commands, with etcd-style additions: a global revision,
// watches that resume from a revision, leases and ephemeral nodes, sequential nodes,
// transactions.
//
// # Wiring (the caller's duties)
//
// A Store is the raft FSM; a Service serves it, over a Consensus (a *raft.Sub):
//
//	store, err := unicorn.NewStore(cfg)          // register it as the FSM (a raft.Mux part)
//	sub := node.Sub(tag)                          // unicorn.Consensus for that part
//	svc, err := unicorn.New(cfg, store, sub, log)
//	for name, h := range svc.LeaderHandlers() {   // keepalives reach the leader through these
//		register(name, h)                         // LeaderCall routes them
//	}
//	srv := rpc.NewServer(svc.Dispatcher(), rpc.SessionConfig{Log: log})
//	go srv.Serve(ctx, listener)                   // the `unicorn` service, name unicorn.Name
//	err = svc.Run(ctx)                            // lease machinery; returns when all stopped
//
// The raft layer calls Apply, Snapshot and Restore from one goroutine, as raft.FSM says;
// every other method of Store and Service is safe for concurrent use. Run returns only
// when every goroutine the service started has exited (request handlers included); on
// the way out it revokes, best effort, the leases this host owns. Every replica should
// use the same Config.HistorySize and HistoryBytes, so that their snapshots are
// byte-identical.
//
// # Data model
//
// A tree of nodes keyed by path. Paths are non-empty, start with '/', are not "/" itself,
// have no empty, "." or ".." components, no trailing '/', no NUL, and at most
// MaxPathLength (4096) bytes; anything else is invalid_path. A node holds one msgpack
// object as its value (at most Config.MaxValueSize, 1 MiB by default, checked where the
// command is proposed: invalid_value gives both sizes; a value that is not a dynamic
// value, with ext types or non-string map keys, is a protocol violation as in the
// original), a data version (0 at creation, +1 per put, as ZooKeeper), a children
// version (+1 per child created or removed), its create and mod revisions, the lease it
// is bound to (0: persistent) and a sequence counter for sequential children (names get
// a 10-digit, zero-padded suffix; 9,999,999,999 is the last).
//
// Creating a node creates its missing ancestors as persistent nodes holding msgpack nil
// (the original's QUIRK of an empty byte string is fixed). Ephemeral nodes cannot have
// children, as in ZooKeeper. get and subscribe refuse a node with children
// (child_not_allowed); get of an absent node is [nil, -1], not an error.
//
// The global revision grows by one with every applied command that changes the tree;
// the events of one command (a transaction, a revoke, a create with its parents) share
// it and keep their order. Lease grants change no revision. Every event is
// [revision, create|put|delete, path, value, version]; a delete has value nil and
// version -1. The last Config.HistorySize events (10,000 by default; fewer when they
// hold more than Config.HistoryBytes, 64 MiB by default) are kept, in
// snapshots too, so that watches resume across restarts; the compacted revision C is the
// highest revision some of whose events are gone: a watch may start at any revision >= C.
//
// Commands and snapshots have their own versioned msgpack encodings (CommandVersion,
// SnapshotVersion; see command.go and snapshot.go). Apply never panics: a command that
// does not decode or fails a check changes nothing and returns an error result, the
// same on every replica.
//
// # Consistency
//
// Writes go through Consensus.Propose. Reads (get, children, revision, and the first
// answer of subscribe, children_subscribe and of a watch "from now") first wait for the
// read index: they see every write acknowledged anywhere before they started. get takes
// an optional consistency: "default" (read index), "linearizable" (the leader also
// confirms with a quorum that it leads) or "serializable" (this replica as it is:
// fastest, possibly stale).
//
// # Watches
//
// Apply appends the events to the history and wakes only the watchers indexed under the
// paths concerned (by exact path, by parent for children watches, by every ancestor for
// recursive ones), with non-blocking sends on one-token channels. Each watcher reads the
// history at its own pace, on its own goroutine (one per stream, from the Service's
// group), so a slow watcher never blocks Apply or the others, and a watcher costs a few
// hundred bytes plus its goroutine. A watch stream is gap-free, duplicate-free and in
// revision order. A watcher that falls behind the retained history gets compacted
// (category 11, code 12): "compacted, current revision is R, oldest available is C"; a
// subscribe (latest-state semantics: intermediate states may be skipped) just sends the
// current state instead. After a Restore, watchers rescan the restored history from
// where they were.
//
// # Leases, sessions, locks
//
// A lease has an id (assigned by the store, 1, 2, ...) and a TTL in seconds (clamped to
// [MinLeaseTTL, MaxLeaseTTL]); revoking it deletes its ephemeral nodes at one revision.
// Deadlines are not in the store (it reads no clock): the leader keeps them in memory,
// resets every one to now+TTL when it becomes leader, renews them on keepalive, and
// proposes the revocation of expired ones every Config.ExpiryInterval. Keepalives reach
// the leader through Consensus.LeaderCall (KeepaliveMethod), batched.
//
// Each host keeps alive, in one keeper loop every TTL/3, the leases it owns: its host
// lease (HostLease; the locator publishes this host's services under it) and one session
// lease per client connection, granted when the connection first creates an ephemeral
// node (create with ephemeral, create_ex with ephemeral and lease 0, a transaction's
// ephemeral create) or takes a lock, and revoked when the connection closes (retried
// until it succeeds or the lease has expired anyway). A host that cannot renew a lease
// by its local deadline (send time of the last successful keepalive + TTL - TTL/4)
// treats it as lost: the locks held under it end with connection_loss, before the leader
// can expire the lease, so a partitioned host never believes it holds a lock that
// another host has taken. A lost host lease is replaced by a new one.
//
// lock(path) and named_lock(path, value) follow ZooKeeper's recipe: an ephemeral
// sequential child lock<10 digits> of the folder path, bound to the session lease, whose
// value is the Unix time (lock) or the caller's value (named_lock). When it is the
// smallest child the stream sends [true]; otherwise it waits for its immediate
// predecessor, which must itself be a lock node (else "trash data in lock folder",
// backend_internal_error). close, discard or disconnect releases the lock (the node is
// removed). Losing it (the node removed by someone else, or the session lease lost) is an
// error, never [false].
//
// # The unicorn protocol (version 1)
//
// Methods 0..9 are the original's, at their original ids, with its semantics: subscribe,
// children_subscribe, put, get, create, del, remove, increment, lock, named_lock. Every
// method's dispatch switches to a protocol whose only message is close (id 0). One-shot
// methods reply once; stream methods send chunks until an error and never close
// themselves. Errors are category 11, codes 1-11 as the original (plugins.md §1.7), 12
// compacted and 13 lease_not_found; consensus failures and timeouts are 10
// connection_loss. Argument type errors close the connection, as in the original.
//
//	0  subscribe(path)              stream of [[value, version]]
//	1  children_subscribe(path)     stream of [cversion, [names...]]  (names sorted)
//	2  put(path, value, version)    [bool, [value, version]]   mismatch: [false, current]
//	3  get(path, ?consistency)      [[value, version]]         absent: [[nil, -1]]
//	4  create(path, value, ?ephemeral, ?sequence)   [true]
//	5  del(path, version)           [true]                     version -1: any
//	6  remove(path, version)        [true]
//	7  increment(path, delta)       [[value, version]]         absent: created, [delta, 0]
//	8  lock(path)                   stream of [true]
//	9  named_lock(path, value)      stream of [true]
//
// The additions follow (old clients find methods by name in the graph, so appending
// keeps them working):
//
//	10 watch(path, from_revision, ?recursive)
//	     stream: [start_revision, "sync", path, nil, -1] first, meaning "every event with
//	     a revision above start_revision follows", then [revision, "create"|"put"|"delete",
//	     path, value, version] for each event of path (and of every node below it if
//	     recursive; "/" is allowed then), in order, gap-free. from_revision < 0: from now.
//	     A from_revision below the compacted revision fails with compacted.
//	11 create_ex(path, value, flags)       [created_path, revision]
//	     flags: {"ephemeral": bool, "sequence": bool, "lease": id}; a lease implies
//	     ephemeral; ephemeral with lease 0 (or absent) binds to this connection's lease.
//	12 lease_grant(ttl_seconds)            [lease_id, ttl]        (the TTL granted)
//	13 lease_keepalive(lease_id)           [ttl]                  lease_not_found if gone
//	14 lease_revoke(lease_id)              [true]                 lease_not_found if gone
//	15 txn(compares, success_ops, failure_ops)   [succeeded, [results...], revision]
//	     compare: [path, target, op, operand]; target "value" (operand a value; op == or
//	     !=; equal means byte-equal encodings; false for an absent node), "version" (-1
//	     when absent), "exists" (a bool; == or !=), "mod_revision", "create_revision" (0
//	     when absent); op "==", "!=", "<", ">".
//	     op: ["put", path, value, ?version] (version -1 or absent: any),
//	         ["create", path, value, ?flags] (flags as create_ex),
//	         ["remove", path, ?version], ["get", path].
//	     If every compare holds, success_ops run, else failure_ops, all at one revision.
//	     Each op must succeed, or the whole transaction fails with its error and changes
//	     nothing (put of an absent node no_node, version mismatch version_not_allowed,
//	     create of an existing node node_exists, get of a node with children
//	     child_not_allowed). Each result is [path, value, version]: create gives the
//	     created path, the value and 0; put the new version; remove nil and -1; get the
//	     value and version ([nil, -1] when absent). revision is the revision after it.
//	     Malformed compares or ops (unknown names) are invalid_node_name (5).
//	16 children(path)                       [cversion, [names sorted]]  no_node if absent
//	17 revision()                           [revision, compacted_revision]
//
// # Limits
//
// MaxPathLength bytes per path; Config.MaxValueSize per value; MaxTxnOps compares and
// operations per branch of a transaction; MaxRevokeBatch leases per revoke command;
// lease TTLs within [MinLeaseTTL, MaxLeaseTTL]; Config.HistorySize events and
// Config.HistoryBytes bytes of history.
package unicorn
