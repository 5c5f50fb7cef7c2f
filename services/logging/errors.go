package logging

import "errors"

// Sentinel errors. Match them with errors.Is; the wrapped message carries the detail.
var (
	// ErrInvalidFilter: a filter representation that ParseFilter cannot accept. The
	// wrapped message names the offending operator or operand, for example
	// `logging: invalid filter: "||" needs 2 operands, got 1`.
	ErrInvalidFilter = errors.New("logging: invalid filter")

	// ErrSinkClosed: Write or Flush on a sink after Close.
	ErrSinkClosed = errors.New("logging: sink closed")
)

// ErrNoCluster is returned by set_cluster_filter by a service built without a
// FilterStore (WithFilterStore): it has no unicorn to share the filter through.
var ErrNoCluster = errors.New("logging: cluster filters need the unicorn service, which this node does not run")
