// Package harness runs cocaine side by side with the systems people would otherwise pick,
// on one machine, in one run (shared/spec/peers.md §3, issue 9): unicorn against etcd
// and ZooKeeper, our RPC against gRPC-go, and the node service's round trips and cold
// starts. cmd/cocaine-bench is its command; scripts/bench installs the peers and runs it.
//
// # What runs
//
// Every system is a set of real server processes on 127.0.0.1 with their own temporary
// data dir and kernel-chosen free ports, one member (T1) or three (T3), with fsync on
// (our Raft log fsyncs; etcd always does; ZooKeeper with forceSync=yes), pinned with
// taskset to Servers.CPUs while the harness runs on the other core. Systems run one at a
// time: start, warm up, every workload, stop, remove the data dir.
//
//	W1 put             1 conn, 1 client, sequential puts: latency
//	W2 put             --conns × --clients concurrent puts: throughput
//	W3 range           gets of one key, linearizable and serializable, 1×1 and concurrent
//	W5 cas-increment   clients increment one counter with read + compare-and-swap + retry
//	W6 watch-latency   N watchers of one key; put → every watcher's notification
//	W8 watch-resume    a watcher disconnects, updates happen, it resumes from its revision
//	W9 ephemeral-expiry an owner process with one ephemeral key per session is SIGKILLed
//	R1, R2             echo over one connection: unary calls, or ping-pong on streams
//	A1, A2             request round trips through the node to the Go echo worker
//	A3                 worker cold start per isolate (process now; runc when it exists)
//	A4                 `runc run` of /bin/true: the container baseline
//
// Unicorn's "put" is a compare-and-swap on the version, so W1/W2 write with a one-op
// transaction (put if the key exists, else create), the equivalent of etcd's Put;
// ZooKeeper uses setData(-1). Reads: unicorn get with its consistency, etcd Range
// (serializable or not), ZooKeeper getData with sync() first for linearizable. CAS:
// unicorn put(version), etcd Txn on mod_revision, ZooKeeper setData(version). Watches:
// unicorn watch, etcd Watch, ZooKeeper getData watches re-armed after each notification
// (one-shot: changes in between are coalesced, and counted).
//
// # Measurements
//
// Each row (Result) has p50/p90/p99/p99.9/max latency, throughput, errors, and the
// servers' CPU (utime+stime from /proc/<pid>/stat), peak RSS (VmHWM, reset through
// clear_refs before each workload) and bytes written to storage (/proc/<pid>/io). Rows are
// written as JSON lines when measured, then as one markdown table with issue 9's targets
// and their ratios (Markdown).
//
// # Bounds and cleanup
//
// Every step is bounded by its count or duration and by Profile.StepTimeout. Servers are
// in their own process groups and die with the harness (Pdeathsig); Run stops every
// process it started and removes every directory before it returns, on every path.
package harness
