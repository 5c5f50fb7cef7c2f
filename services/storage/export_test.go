package storage

import "testing"

// NewLocalReplicated returns a Replicated backend over a fresh state with cfg, replicated
// through a single-process consensus, and closed when the test ends. It exists for the
// external tests, which serve it (service_test.go).
func NewLocalReplicated(t testing.TB, cfg ReplicatedConfig) *Replicated {
	t.Helper()
	r, _, _ := newTestReplicated(t, cfg)
	return r
}
