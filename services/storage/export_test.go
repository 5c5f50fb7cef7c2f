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

// NewLocalReplicatedBlobs is NewLocalReplicated with a blob store in a temporary
// directory, limited to maxBlobSize bytes (DefaultMaxBlobSize if 0): values over
// cfg.MaxValueSize go to it. The host is its only holder, so nothing is ever fetched.
func NewLocalReplicatedBlobs(t testing.TB, cfg ReplicatedConfig, maxBlobSize int) *Replicated {
	t.Helper()
	return newSoloBlobs(t, cfg, maxBlobSize).r
}

// NewLocalBlobs is NewLocalReplicatedBlobs, and returns the blob store too, for a test to
// serve it as the blobs service.
func NewLocalBlobs(t testing.TB, cfg ReplicatedConfig, maxBlobSize int) (*Replicated, *Blobs) {
	t.Helper()
	h := newSoloBlobs(t, cfg, maxBlobSize)
	return h.r, h.blobs
}
