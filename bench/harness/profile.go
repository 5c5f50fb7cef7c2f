package harness

import (
	"fmt"
	"time"
)

// ConnClients is a --conns/--clients pair: clients logical clients over conns
// connections, spread round robin over the members.
type ConnClients struct{ Conns, Clients int }

// Profile sizes every workload. Every step is bounded by its count (or duration) and
// by StepTimeout.
type Profile struct {
	Name        string
	StepTimeout time.Duration
	Warmup      int // puts and gets before the first workload (warms ZooKeeper's JIT too)

	KeySize, ValSize int // W1-W3 (peers.md: 8 and 256 bytes)
	KeySpace         int // distinct keys the puts cycle through (etcd's --key-space-size, 1 by default)

	SeqPuts  int           // W1: 1 conn, 1 client
	PutRuns  []ConnClients // W2
	PutTotal int
	SeqGets  int         // W3: 1 conn, 1 client
	GetRun   ConnClients // W3: concurrent
	GetTotal int

	CASClients  int // W5
	CASDuration time.Duration

	Watchers     []int // W6: watchers of one key
	WatchConns   int   // connections the watchers share
	WatchPuts    int
	WatchRate    int // puts/s
	WatchValSize int

	ResumeUpdates int // W8: updates while the watcher is away

	EphSessions int // W9
	EphTTL      time.Duration

	RPCCalls       int   // R1-R2: calls per case
	RPCConcurrency []int // concurrent calls on the one connection
	RPCPayload     int   // bytes (peers.md: 581)

	AppRequests  int // A1: sequential requests
	AppInflight  int // A2
	AppTotal     int
	ColdStarts   int      // A3: worker cold starts per isolate
	ColdIsolates []string // A3: "process", "runc"
	RuncRuns     int      // A4: `runc run` of /bin/true
}

// Profiles: quick (under 15 minutes for the whole script), full (under 45), short (the
// test suite's, seconds).
var Profiles = map[string]Profile{
	"quick": {
		Name: "quick", StepTimeout: 90 * time.Second, Warmup: 1000,
		KeySize: 8, ValSize: 256, KeySpace: 1,
		SeqPuts: 2000, PutRuns: []ConnClients{{10, 10}, {10, 100}}, PutTotal: 20000,
		SeqGets: 5000, GetRun: ConnClients{10, 100}, GetTotal: 50000,
		CASClients: 16, CASDuration: 10 * time.Second,
		Watchers: []int{1, 100, 1000}, WatchConns: 10, WatchPuts: 500, WatchRate: 100, WatchValSize: 32,
		ResumeUpdates: 1000,
		EphSessions:   100, EphTTL: 5 * time.Second,
		RPCCalls: 100000, RPCConcurrency: []int{1, 100, 1000}, RPCPayload: 581,
		AppRequests: 2000, AppInflight: 64, AppTotal: 20000,
		ColdStarts: 20, ColdIsolates: []string{"process", "runc"}, RuncRuns: 20,
	},
	"full": {
		Name: "full", StepTimeout: 90 * time.Second, Warmup: 5000,
		KeySize: 8, ValSize: 256, KeySpace: 1,
		SeqPuts: 5000, PutRuns: []ConnClients{{10, 10}, {10, 100}, {100, 1000}}, PutTotal: 50000,
		SeqGets: 10000, GetRun: ConnClients{10, 100}, GetTotal: 100000,
		CASClients: 16, CASDuration: 30 * time.Second,
		Watchers: []int{1, 100, 1000}, WatchConns: 10, WatchPuts: 2000, WatchRate: 100, WatchValSize: 32,
		ResumeUpdates: 1000,
		EphSessions:   1000, EphTTL: 5 * time.Second,
		RPCCalls: 200000, RPCConcurrency: []int{1, 100, 1000}, RPCPayload: 581,
		AppRequests: 10000, AppInflight: 64, AppTotal: 100000,
		ColdStarts: 100, ColdIsolates: []string{"process", "runc"}, RuncRuns: 100,
	},
	"short": {
		Name: "short", StepTimeout: 60 * time.Second, Warmup: 20,
		KeySize: 8, ValSize: 256, KeySpace: 1,
		SeqPuts: 50, PutRuns: []ConnClients{{2, 4}}, PutTotal: 200,
		SeqGets: 50, GetRun: ConnClients{2, 4}, GetTotal: 200,
		CASClients: 2, CASDuration: time.Second,
		Watchers: []int{1, 10}, WatchConns: 2, WatchPuts: 10, WatchRate: 100, WatchValSize: 32,
		ResumeUpdates: 20,
		EphSessions:   3, EphTTL: 2 * time.Second,
		RPCCalls: 2000, RPCConcurrency: []int{1, 10}, RPCPayload: 581,
		AppRequests: 20, AppInflight: 8, AppTotal: 100,
		ColdStarts: 2, ColdIsolates: []string{"process", "runc"}, RuncRuns: 2,
	},
}

// key is the i-th key of the key space: "/kv/" and i zero-padded to KeySize bytes in all
// (at least 4 digits), the same bytes for every system.
func (p Profile) key(i int) string {
	return fmt.Sprintf("/kv/%0*d", max(4, p.KeySize-4), i%max(1, p.KeySpace))
}
