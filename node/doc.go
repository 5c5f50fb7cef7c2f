// Package node is Cocaine's app engine: the node::v2 service (start_app, pause_app, list,
// info, control, enqueue; plugins.md §2.5), the app table with its states, and for every
// running app an engine that owns a queue and a pool of workers, and a service named
// after the app (enqueue, info, control) on its own port.
//
// # What a request goes through
//
//	client --enqueue(event)--> app service --admit--> queue --least loaded active worker-->
//	    worker channel (invoke + the client's chunks) ... worker's chunks --> client
//
// Admission refuses an event when the queue holds queue-limit events (ErrQueueFull, or
// with queue-limit 0 when it holds as many as the pool has free slots). Events leave the
// queue in order, to the active worker with the smallest load below concurrency; client
// chunks that arrive before that are buffered. A request ends when both directions
// ended, when its request timeout (the profile's request-timeout or the request_timeout
// header) passes (ErrTimeout; ErrDeadline while still queued), or when its worker dies
// (the worker's reason, e.g. ErrHeartbeatTimeout or ErrControlIPC with the exit status).
//
// # The pool
//
// Workers are spawned on demand through an Isolate, with the original arguments
// (--app --endpoint --locator --protocol 1 --uuid), and connect to the app's unix socket
// <runtime_dir>/<app>.<pid>, where they handshake, heartbeat and get invokes (the worker
// protocol, plugins.md §2.9). The pool grows with the queue up to pool-limit; idle
// workers retire after idle-timeout; control(N) pins it to N. A worker that fails blocks
// spawns for a back-off of 1 s doubling to 32 s, and leaves a crash log (its last output
// lines and why it ended) in the crashlogs collection.
//
// # Concurrency
//
// Each app's engine is one goroutine that owns the queue, the pool and every worker's
// state machine; session readers, timers and process waiters post closures to it. The
// streams of a request are bridged directly between the client's and the worker's
// sessions, under the request's own lock. Service.Run returns only after every app has
// stopped and every worker process has exited.
package node
