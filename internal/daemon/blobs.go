package daemon

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/services/storage"
)

// The blob store of the storage service: values over storage.max_value_size are kept as
// files under <data_dir>/blobs, with their digests and holders in the Raft log, and sent
// between hosts by the blobs service, which the daemon serves on its own port beside the
// others and keeps out of other hosts' locators (see storage.Blobs).

// blobsConfig is the blob store's configuration from the storage section.
func (c StorageConfig) blobsConfig(dataDir string) storage.BlobsConfig {
	return storage.BlobsConfig{
		Dir:          filepath.Join(dataDir, "blobs"),
		MaxBlobSize:  c.MaxBlobSize,
		GCInterval:   time.Duration(c.BlobGCInterval),
		FetchTimeout: time.Duration(c.BlobFetchTimeout),
	}
}

// validateBlobs reports every problem of the blob store's keys.
func (c StorageConfig) validateBlobs() error {
	var errs []error
	if c.MaxBlobSize < 0 || c.MaxBlobSize > storage.MaxBlobSizeLimit {
		errs = append(errs, fmt.Errorf("storage.max_blob_size %d must be between 0 (the default, %d) and %d",
			c.MaxBlobSize, storage.DefaultMaxBlobSize, storage.MaxBlobSizeLimit))
	}
	if c.BlobGCInterval < 0 {
		errs = append(errs, fmt.Errorf("storage.blob_gc_interval %s must not be negative", time.Duration(c.BlobGCInterval)))
	}
	if c.BlobFetchTimeout < 0 {
		errs = append(errs, fmt.Errorf("storage.blob_fetch_timeout %s must not be negative", time.Duration(c.BlobFetchTimeout)))
	}
	return errors.Join(errs...)
}

// newBlobs opens this host's blob store over the replicated storage state. The host is
// named by its node id among a blob's holders, and other hosts fetch from the endpoints
// of its blobs service, known once the service listens.
func (d *Daemon) newBlobs(id string, state *storage.ReplicatedState, c storage.Consensus) (*storage.Blobs, error) {
	return storage.NewBlobs(d.cfg.Storage.blobsConfig(d.cfg.DataDir), storage.BlobsDeps{
		State:     state,
		Consensus: c,
		Host:      id,
		Endpoints: func() []rpc.Endpoint { return d.Endpoint(storage.BlobsName) },
		Log:       d.log,
	})
}
