package storage

import (
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/cocaine/cocaine/rpc"
)

// The encodings of blob references, holders and blob records (see the formats at the top
// of replicated_codec.go).

// Limits of the blob formats. They are part of the formats: never lower them, or replicas
// would reject commands they once applied, and diverge.
const (
	// MaxBlobSizeLimit is the largest blob a reference may name, and the most
	// BlobsConfig.MaxBlobSize may be. A value travels whole in one frame and one msgpack
	// raw, whose length has 32 bits.
	MaxBlobSizeLimit = 2 << 30

	// MaxBlobHolders bounds the holders recorded for one blob. Holds of further hosts are
	// applied without recording them: those hosts keep and serve their copies all the
	// same, but nobody fetches from them.
	MaxBlobHolders = 256

	// maxHolderEndpoints bounds the endpoints of one holder.
	maxHolderEndpoints = 16

	// maxHoldDigests bounds the digests of one hold command; a host with more to record
	// proposes several.
	maxHoldDigests = 256
)

// blobRef is what an entry keeps instead of a value kept in the blob store.
type blobRef struct {
	digest Digest
	size   int64
}

// holder is a host that has a copy of a blob, and where its storage service listens.
type holder struct {
	host      string
	endpoints []rpc.Endpoint
}

// equalHolder reports whether a and b are the same host at the same endpoints.
func equalHolder(a, b holder) bool {
	return a.host == b.host && slices.Equal(a.endpoints, b.endpoints)
}

// appendWriteBlobCommand appends the write blob command of collection/key. holders must
// be sorted by host and unique, tags normalized.
func appendWriteBlobCommand(b []byte, collection, key string, ref blobRef, holders []holder, tags []string) []byte {
	b = rpc.AppendArrayHeader(b, 8)
	b = rpc.AppendUint(b, blobCommandVersion)
	b = rpc.AppendUint(b, opWriteBlob)
	b = rpc.AppendString(b, collection)
	b = rpc.AppendString(b, key)
	b = appendBlobRef(b, ref)
	b = appendHolders(b, holders)
	return appendTagList(b, tags)
}

// appendHoldCommand appends the command that records h as a holder of digests, which
// must be sorted and unique.
func appendHoldCommand(b []byte, h holder, digests []Digest) []byte {
	b = rpc.AppendArrayHeader(b, 4)
	b = rpc.AppendUint(b, blobCommandVersion)
	b = rpc.AppendUint(b, opHold)
	b = appendHolder(b, h)
	b = rpc.AppendArrayHeader(b, len(digests))
	for _, d := range digests {
		b = rpc.AppendBytes(b, d[:])
	}
	return b
}

// appendBlobRef appends digest and size, two elements of the enclosing array.
func appendBlobRef(b []byte, ref blobRef) []byte {
	b = rpc.AppendBytes(b, ref.digest[:])
	return rpc.AppendUint(b, uint64(ref.size))
}

func appendHolders(b []byte, hs []holder) []byte {
	b = rpc.AppendArrayHeader(b, len(hs))
	for _, h := range hs {
		b = appendHolder(b, h)
	}
	return b
}

func appendHolder(b []byte, h holder) []byte {
	b = rpc.AppendArrayHeader(b, 2)
	b = rpc.AppendString(b, h.host)
	b = rpc.AppendArrayHeader(b, len(h.endpoints))
	for _, ep := range h.endpoints {
		b, _ = ep.AppendMsgpack(b)
	}
	return b
}

// decodeBlobRef reads a digest and a size.
func decodeBlobRef(d *rpc.Decoder) (blobRef, error) {
	var ref blobRef
	var err error
	if ref.digest, err = decodeDigest(d); err != nil {
		return ref, err
	}
	size, err := d.Uint()
	if err != nil {
		return ref, malformed("blob size", err)
	}
	if size > MaxBlobSizeLimit {
		return ref, fmt.Errorf("%w: blob of %d bytes, the limit is %d", ErrTooLarge, size, MaxBlobSizeLimit)
	}
	ref.size = int64(size)
	return ref, nil
}

func decodeDigest(d *rpc.Decoder) (Digest, error) {
	var dg Digest
	raw, err := d.Bytes()
	if err != nil {
		return dg, malformed("blob digest", err)
	}
	if len(raw) != len(dg) {
		return dg, fmt.Errorf("%w: malformed blob digest of %d bytes", ErrCorrupt, len(raw))
	}
	copy(dg[:], raw)
	return dg, nil
}

// decodeHolders reads a holder list: at most MaxBlobHolders, sorted by host and unique.
// An empty list decodes to nil.
func decodeHolders(d *rpc.Decoder) ([]holder, error) {
	n, err := d.ArrayLen()
	if err != nil {
		return nil, malformed("holder list", err)
	}
	if n > MaxBlobHolders {
		return nil, fmt.Errorf("%w: malformed holder list: %d holders, the limit is %d", ErrCorrupt, n, MaxBlobHolders)
	}
	if n == 0 {
		return nil, nil
	}
	hs := make([]holder, 0, n)
	for range n {
		h, err := decodeHolder(d)
		if err != nil {
			return nil, err
		}
		if len(hs) > 0 && h.host <= hs[len(hs)-1].host {
			return nil, fmt.Errorf("%w: malformed holder list: not sorted and unique", ErrCorrupt)
		}
		hs = append(hs, h)
	}
	return hs, nil
}

// decodeHolder reads [host, [[ip, port], ...]].
func decodeHolder(d *rpc.Decoder) (holder, error) {
	var h holder
	n, err := d.ArrayLen()
	if err != nil {
		return h, malformed("holder", err)
	}
	if n != 2 {
		return h, fmt.Errorf("%w: malformed holder with %d elements, want 2", ErrCorrupt, n)
	}
	if h.host, err = decodeName(d, "host"); err != nil {
		return h, err
	}
	if n, err = d.ArrayLen(); err != nil {
		return h, malformed("holder endpoints", err)
	}
	if n < 1 || n > maxHolderEndpoints {
		return h, fmt.Errorf("%w: malformed holder with %d endpoints, want 1 to %d", ErrCorrupt, n, maxHolderEndpoints)
	}
	h.endpoints = make([]rpc.Endpoint, n)
	for i := range h.endpoints {
		if h.endpoints[i], err = decodeEndpoint(d); err != nil {
			return h, err
		}
	}
	return h, nil
}

// holderIP reports whether host is an endpoint address the formats accept. ParseIP
// accepts a zone-less address only, so the text is one of a few canonical spellings; a
// bound keeps hostile ones short.
func holderIP(host string) bool {
	return len(host) <= 64 && !strings.ContainsRune(host, '%') && net.ParseIP(host) != nil
}

// decodeEndpoint reads [ip, port]: a literal IP (as the locator publishes them) and a
// port from 1 to 65535.
func decodeEndpoint(d *rpc.Decoder) (rpc.Endpoint, error) {
	var ep rpc.Endpoint
	n, err := d.ArrayLen()
	if err != nil {
		return ep, malformed("endpoint", err)
	}
	if n != 2 {
		return ep, fmt.Errorf("%w: malformed endpoint with %d elements, want 2", ErrCorrupt, n)
	}
	if ep.Host, err = d.String(); err != nil {
		return ep, malformed("endpoint address", err)
	}
	if !holderIP(ep.Host) {
		return ep, fmt.Errorf("%w: malformed endpoint: %s is not an IP address", ErrCorrupt, displayName(ep.Host))
	}
	port, err := d.Uint()
	if err != nil {
		return ep, malformed("endpoint port", err)
	}
	if port < 1 || port > 65535 {
		return ep, fmt.Errorf("%w: malformed endpoint: port %d", ErrCorrupt, port)
	}
	ep.Port = uint16(port)
	return ep, nil
}

// decodeHold reads the rest of a hold command: the holder and its digests.
func decodeHold(d *rpc.Decoder, c *command) error {
	h, err := decodeHolder(d)
	if err != nil {
		return err
	}
	c.holders = []holder{h}
	n, err := d.ArrayLen()
	if err != nil {
		return malformed("digest list", err)
	}
	if n < 1 || n > maxHoldDigests {
		return fmt.Errorf("%w: malformed hold of %d digests, want 1 to %d", ErrCorrupt, n, maxHoldDigests)
	}
	c.digests = make([]Digest, 0, n)
	for range n {
		dg, err := decodeDigest(d)
		if err != nil {
			return err
		}
		if len(c.digests) > 0 && string(dg[:]) <= string(c.digests[len(c.digests)-1][:]) {
			return fmt.Errorf("%w: malformed digest list: not sorted and unique", ErrCorrupt)
		}
		c.digests = append(c.digests, dg)
	}
	return nil
}

// appendBlobEntryHead appends an entry record that refers to a blob, up to its tag list,
// which follows.
func appendBlobEntryHead(b []byte, key string, ref blobRef) []byte {
	b = rpc.AppendArrayHeader(b, 4)
	b = rpc.AppendString(b, key)
	return appendBlobRef(b, ref)
}

// appendBlobRecord appends the snapshot record of the blob d.
func appendBlobRecord(b []byte, d Digest, info blobInfo) []byte {
	b = rpc.AppendArrayHeader(b, 3)
	b = appendBlobRef(b, blobRef{digest: d, size: info.size})
	return appendHolders(b, info.holders)
}

// blob reads a blob record.
func (sr *snapshotReader) blob() (blobRef, []holder, error) {
	n, err := sr.next("blob")
	if err != nil {
		return blobRef{}, nil, err
	}
	if n != 3 {
		return blobRef{}, nil, fmt.Errorf("%w: snapshot blob record with %d elements, want 3", ErrCorrupt, n)
	}
	ref, err := decodeBlobRef(&sr.d)
	if err != nil {
		return blobRef{}, nil, err
	}
	holders, err := decodeHolders(&sr.d)
	if err != nil {
		return blobRef{}, nil, err
	}
	if len(holders) == 0 {
		return blobRef{}, nil, fmt.Errorf("%w: blob %s without holders in the snapshot", ErrCorrupt, ref.digest)
	}
	return ref, holders, sr.done("blob")
}

// maxBlobRecord bounds a blob record: the largest digest, size and holder list under the
// widest headers. It is well under maxSnapshotRecord, which the reader enforces.
const maxBlobRecord = 16 + (5 + len(Digest{})) + 9 + MaxBlobHolders*(8+(5+MaxNameSize)+maxHolderEndpoints*(8+64+3))
