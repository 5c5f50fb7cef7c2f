package storage

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/cocaine/cocaine/rpc"
)

// BlobsName is the name of the service through which hosts fetch each other's blobs. It
// is internal to the cluster: clients read values through the storage service.
const BlobsName = "blobs"

// BlobsGraph is the blobs service's protocol, version 1, one method:
//
//	read [digest]     the digest in hex (see Digest.String)
//
// The reply is a stream: write [chunk] for each piece of the blob in order, at most
// blobChunk bytes each, then close []; or an error: [12, 2] when this host has no such
// blob, [12, 11] when it is sending too many already (try another holder), [12, 5] when
// its copy turned out not to match the digest (it is deleted then), [12, 22] for a
// malformed digest. The fetcher checks size and digest itself too.
var BlobsGraph = rpc.ServiceGraph(1,
	rpc.Method{Name: "read", Dispatch: rpc.Terminal, Upstream: rpc.Streaming},
)

// maxBlobStreams bounds the blobs one host sends at once: each holds a file and a chunk
// buffer, and the disk is shared.
const maxBlobStreams = 8

// Dispatcher serves BlobsGraph over this host's blob store. With Run, it makes Blobs a
// service the daemon serves on its own port.
func (b *Blobs) Dispatcher() *rpc.Dispatcher { return b.d }

// serveRead handles read [digest]: it starts the stream in the service's group.
func (b *Blobs) serveRead(ctx context.Context, req *rpc.Request) error {
	var hex string
	if err := req.Args.Scan(&hex); err != nil {
		return err
	}
	d, err := ParseDigest(hex)
	if err != nil {
		return err
	}
	select {
	case b.streams <- struct{}{}:
	default:
		return fmt.Errorf("%w: blob %s: this host is sending %d blobs already", ErrBlobUnavailable, d, maxBlobStreams)
	}
	release := func() { <-b.streams }
	tx := req.Tx
	if !b.work.Go(func(ctx context.Context) {
		defer release()
		if err := sendBlob(ctx, tx, b.store, d); err != nil {
			tx.Error(errorTable.Wire(err))
		}
	}) {
		release()
		return fmt.Errorf("%w: the blobs service is stopping", ErrClosed)
	}
	return nil
}

// sendBlob streams the blob d to tx and closes the stream, checking the digest on the
// way. An error it returns is for the stream's error reply; it returns nil when the
// stream was closed or the connection is gone.
func sendBlob(ctx context.Context, tx *rpc.Tx, store *blobStore, d Digest) error {
	f, size, err := store.open(d)
	if errors.Is(err, errNoBlob) {
		return fmt.Errorf("%w: blob %s is not on this host", ErrNotFound, d)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if size > int64(store.maxSize) {
		return store.corrupt(d, fmt.Errorf("%d bytes, over the limit of %d", size, store.maxSize))
	}
	h := sha256.New()
	buf := make([]byte, blobChunk)
	for sent := int64(0); ; {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%w: the blobs service is stopping", ErrClosed)
		}
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			h.Write(buf[:n])
			if werr := tx.Write(buf[:n]); werr != nil {
				return nil // the fetcher is gone
			}
			sent += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			if got := Digest(h.Sum(nil)); got != d || sent != size {
				return store.corrupt(d, fmt.Errorf("the %d bytes sent have digest %s", sent, got))
			}
			tx.Close()
			return nil
		}
		if err != nil {
			return fmt.Errorf("storage: blob %s: %w", d, err)
		}
	}
}
