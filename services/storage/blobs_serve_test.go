package storage_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/rpc/rpctest"
	"github.com/cocaine/cocaine/services/storage"
)

// blobStream calls read on the blobs service with digest and returns the chunks of its
// stream, or its error.
func blobStream(t *testing.T, c *rpc.Conn, digest string) ([][]byte, error) {
	t.Helper()
	ctx := testCtx(t)
	ch, err := c.Call(ctx, "read", digest)
	if err != nil {
		t.Fatal(err)
	}
	var chunks [][]byte
	for {
		m, err := ch.Recv(ctx)
		if err != nil {
			t.Fatalf("blob stream: %v", err)
		}
		switch m.Name {
		case "write":
			var chunk []byte
			if err := m.Args.Scan(&chunk); err != nil {
				t.Fatalf("chunk: %v", err)
			}
			chunks = append(chunks, chunk)
		case "close":
			return chunks, nil
		default:
			return chunks, m.Err()
		}
	}
}

// A value written through the storage service over the inline limit is in the blob
// store, which the blobs service streams in chunks, then closes the stream.
func TestBlobsService(t *testing.T) {
	leakCheck(t)
	r, blobs := storage.NewLocalBlobs(t, storage.ReplicatedConfig{MaxValueSize: 1 << 10}, 0)
	st := serve(t, func(*testing.T, int) storage.Backend { return r }, 0)
	c := st.dial(t)
	value := make([]byte, 600<<10)
	rand.Read(value)
	mustWrite(t, c, "apps", "echo", value, "app")
	if got := mustRead(t, c, "apps", "echo"); !bytes.Equal(got, value) {
		t.Fatal("read differs")
	}

	ep := rpctest.Serve(t, blobs.Dispatcher(), rpc.SessionConfig{})
	bc, err := rpc.Dial(testCtx(t), []rpc.Endpoint{ep}, storage.BlobsGraph, rpc.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bc.Close() })
	sum := sha256.Sum256(value)
	chunks, err := blobStream(t, bc, hex.EncodeToString(sum[:]))
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) != 3 || len(chunks[0]) != 256<<10 || len(chunks[2]) != 88<<10 {
		t.Fatalf("%d chunks", len(chunks))
	}
	if !bytes.Equal(bytes.Join(chunks, nil), value) {
		t.Fatal("the chunks are not the value")
	}
	other := sha256.Sum256([]byte("never written"))
	_, err = blobStream(t, bc, hex.EncodeToString(other[:]))
	wantError(t, err, 12, 2, "not on this host")
	_, err = blobStream(t, bc, "not a digest")
	wantError(t, err, 12, 22, "digest")
	// The connection survived.
	if _, err := blobStream(t, bc, hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
}
