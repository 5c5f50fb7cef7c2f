// Package raft is the consensus layer of a cocaine cluster: hashicorp/raft with
// raft-boltdb/v2 logs, wired for one group per cluster. It replicates opaque commands
// into an FSM and knows nothing of keys, apps or services.
package raft
