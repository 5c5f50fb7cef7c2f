package storage

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cocaine/cocaine/rpc"
)

// testHolder is host at 127.0.0.1:port.
func testHolder(host string, port int) holder {
	return holder{host: host, endpoints: []rpc.Endpoint{{Host: "127.0.0.1", Port: uint16(port)}}}
}

// blobCmd is the write blob command of collection/key referring to the blob of data.
func blobCmd(collection, key, data string, holders []holder, tags ...string) []byte {
	ref := blobRef{digest: DigestOf([]byte(data)), size: int64(len(data))}
	return appendWriteBlobCommand(nil, collection, key, ref, holders, normalizeTags(tags))
}

// blobOf returns the state's record of the blob of data, and whether it has one.
func blobOf(s *ReplicatedState, data string) (blobInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	info, ok := s.blobs[DigestOf([]byte(data))]
	return info, ok
}

func hosts(hs []holder) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.host)
	}
	return out
}

func TestBlobCommandRoundTrip(t *testing.T) {
	hs := []holder{testHolder("a", 1), {host: "b", endpoints: []rpc.Endpoint{{Host: "::1", Port: 65535}, {Host: "10.0.0.1", Port: 2}}}}
	ref := blobRef{digest: DigestOf([]byte("x")), size: MaxBlobSizeLimit}
	c, err := decodeCommand(appendWriteBlobCommand(nil, "apps", "echo", ref, hs, []string{"app"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.op != opWriteBlob || c.collection != "apps" || c.key != "echo" || c.blob != ref ||
		!slices.EqualFunc(c.holders, hs, equalHolder) || !slices.Equal(c.tags, []string{"app"}) {
		t.Fatalf("write blob decodes to %+v", c)
	}
	digests := []Digest{DigestOf([]byte("1")), DigestOf([]byte("2"))}
	slices.SortFunc(digests, func(a, b Digest) int { return bytes.Compare(a[:], b[:]) })
	c, err = decodeCommand(appendHoldCommand(nil, hs[1], digests))
	if err != nil {
		t.Fatal(err)
	}
	if c.op != opHold || len(c.holders) != 1 || !equalHolder(c.holders[0], hs[1]) || !slices.Equal(c.digests, digests) {
		t.Fatalf("hold decodes to %+v", c)
	}
	// Write and remove keep their version-1 encoding, which older builds apply.
	if got := writeCmd("c", "k", "v"); got[1] != commandVersion {
		t.Fatalf("write command of version %d", got[1])
	}
}

func TestApplyBlobRejects(t *testing.T) {
	d := DigestOf([]byte("v"))
	h := []any{"h", []any{[]any{"127.0.0.1", 1}}}
	for _, tc := range []struct {
		name string
		cmd  []byte
		want error
	}{
		{"write blob in version 1", encode(t, 1, opWriteBlob, "c", "k", d[:], 1, []any{h}, []string{}), ErrCorrupt},
		{"hold in version 1", encode(t, 1, opHold, h, []any{d[:]}), ErrCorrupt},
		{"write blob without holders", encode(t, 2, opWriteBlob, "c", "k", d[:], 1, []any{}, []string{}), ErrCorrupt},
		{"write blob too short", encode(t, 2, opWriteBlob, "c", "k", d[:], 1, []any{h}), ErrCorrupt},
		{"short digest", encode(t, 2, opWriteBlob, "c", "k", d[:31], 1, []any{h}, []string{}), ErrCorrupt},
		{"digest not a raw", encode(t, 2, opWriteBlob, "c", "k", 5, 1, []any{h}, []string{}), ErrCorrupt},
		{"size over the cap", encode(t, 2, opWriteBlob, "c", "k", d[:], MaxBlobSizeLimit+1, []any{h}, []string{}), ErrTooLarge},
		{"negative size", encode(t, 2, opWriteBlob, "c", "k", d[:], -1, []any{h}, []string{}), ErrCorrupt},
		{"holders unsorted", encode(t, 2, opWriteBlob, "c", "k", d[:], 1, []any{[]any{"z", h[1]}, h}, []string{}), ErrCorrupt},
		{"holders repeated", encode(t, 2, opWriteBlob, "c", "k", d[:], 1, []any{h, h}, []string{}), ErrCorrupt},
		{"holder without endpoints", encode(t, 2, opWriteBlob, "c", "k", d[:], 1, []any{[]any{"h", []any{}}}, []string{}), ErrCorrupt},
		{"holder with an empty name", encode(t, 2, opWriteBlob, "c", "k", d[:], 1, []any{[]any{"", h[1]}}, []string{}), ErrInvalidName},
		{"endpoint a host name", encode(t, 2, opWriteBlob, "c", "k", d[:], 1, []any{[]any{"h", []any{[]any{"localhost", 1}}}}, []string{}), ErrCorrupt},
		{"endpoint with a zone", encode(t, 2, opWriteBlob, "c", "k", d[:], 1, []any{[]any{"h", []any{[]any{"fe80::1%eth0", 1}}}}, []string{}), ErrCorrupt},
		{"endpoint port 0", encode(t, 2, opWriteBlob, "c", "k", d[:], 1, []any{[]any{"h", []any{[]any{"127.0.0.1", 0}}}}, []string{}), ErrCorrupt},
		{"endpoint port too high", encode(t, 2, opWriteBlob, "c", "k", d[:], 1, []any{[]any{"h", []any{[]any{"127.0.0.1", 65536}}}}, []string{}), ErrCorrupt},
		{"endpoint of three elements", encode(t, 2, opWriteBlob, "c", "k", d[:], 1, []any{[]any{"h", []any{[]any{"127.0.0.1", 1, 2}}}}, []string{}), ErrCorrupt},
		{"hold of no digests", encode(t, 2, opHold, h, []any{}), ErrCorrupt},
		{"hold of repeated digests", encode(t, 2, opHold, h, []any{d[:], d[:]}), ErrCorrupt},
		{"hold without a holder", encode(t, 2, opHold, "h", []any{d[:]}), ErrCorrupt},
		{"hold with trailing bytes", append(appendHoldCommand(nil, testHolder("h", 1), []Digest{d}), 0), ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newState(t)
			mustApply(t, s, blobCmd("c", "k", "v", []holder{testHolder("h", 1)}, "t"))
			before := snapshotBytes(t, s)
			err := decodeResult(s.Apply(2, tc.cmd))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Apply result %v, want %v", err, tc.want)
			}
			if after := snapshotBytes(t, s); !bytes.Equal(before, after) {
				t.Fatal("a rejected command changed the state")
			}
		})
	}
	// The same digest with another size is refused whole, though the command is well
	// formed: the state keeps one size per blob.
	s := newState(t)
	mustApply(t, s, blobCmd("c", "k", "v", []holder{testHolder("h", 1)}))
	before := snapshotBytes(t, s)
	bad := appendWriteBlobCommand(nil, "c", "other", blobRef{digest: d, size: 2}, []holder{testHolder("g", 1)}, nil)
	if err := decodeResult(s.Apply(3, bad)); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), d.String()) {
		t.Fatalf("Apply = %v, want ErrCorrupt naming the blob", err)
	}
	if !bytes.Equal(before, snapshotBytes(t, s)) {
		t.Fatal("the refused command changed the state")
	}
}

// References behave as values (tags, find, overwrite, remove), and the blob table follows
// them: it counts references, keeps the holders sorted, and drops a blob with its last
// reference.
func TestApplyBlobs(t *testing.T) {
	s := newState(t)
	h1, h2, h3 := testHolder("h1", 1), testHolder("h2", 2), testHolder("h3", 3)
	mustApply(t, s, blobCmd("apps", "echo", "archive", []holder{h2}, "app"))
	mustApply(t, s, writeCmd("apps", "small", "v", "app"))
	if got := s.find("apps", []string{"app"}); !slices.Equal(got, []string{"echo", "small"}) {
		t.Fatalf("find = %q", got)
	}
	v, ref, holders, ok := s.read("apps", "echo")
	if !ok || v != nil || ref == nil || ref.digest != DigestOf([]byte("archive")) || ref.size != 7 || !slices.Equal(hosts(holders), []string{"h2"}) {
		t.Fatalf("read = %q, %+v, %v, %v", v, ref, holders, ok)
	}
	if got := s.blobList(); len(got) != 1 || got[0].ref != *ref {
		t.Fatalf("blobList = %+v", got)
	}
	if !s.referenced(ref.digest) || s.referenced(DigestOf(nil)) {
		t.Fatal("referenced disagrees with the state")
	}

	// Holds add holders in order, replace a holder's endpoints, and skip unknown blobs.
	mustApply(t, s, appendHoldCommand(nil, h3, []Digest{ref.digest}))
	mustApply(t, s, appendHoldCommand(nil, h1, []Digest{DigestOf([]byte("unknown"))}))
	mustApply(t, s, appendHoldCommand(nil, h1, []Digest{ref.digest}))
	moved := testHolder("h3", 33)
	mustApply(t, s, appendHoldCommand(nil, moved, []Digest{ref.digest}))
	info, _ := blobOf(s, "archive")
	if !slices.Equal(hosts(info.holders), []string{"h1", "h2", "h3"}) || !equalHolder(info.holders[2], moved) {
		t.Fatalf("holders = %+v", info.holders)
	}
	if err := checkState(s); err != nil {
		t.Fatal(err)
	}

	// A second key with the same bytes shares the blob; its writer joins the holders.
	mustApply(t, s, blobCmd("apps", "copy", "archive", []holder{testHolder("h0", 9)}))
	if info, _ := blobOf(s, "archive"); info.refs != 2 || len(info.holders) != 4 {
		t.Fatalf("after a second reference: %+v", info)
	}
	// Rewriting a key with the same blob keeps everything.
	mustApply(t, s, blobCmd("apps", "copy", "archive", []holder{testHolder("h0", 9)}, "new"))
	if info, _ := blobOf(s, "archive"); info.refs != 2 || len(info.holders) != 4 {
		t.Fatalf("after a rewrite: %+v", info)
	}
	// Overwriting with an inline value, then removing, drops the references one by one.
	mustApply(t, s, writeCmd("apps", "copy", "inline"))
	if info, _ := blobOf(s, "archive"); info.refs != 1 {
		t.Fatalf("after an overwrite: %+v", info)
	}
	if err := checkState(s); err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, appendRemoveCommand(nil, "apps", "echo"))
	if _, ok := blobOf(s, "archive"); ok {
		t.Fatal("a blob outlived its last reference")
	}
	if len(s.blobList()) != 0 || s.referenced(ref.digest) {
		t.Fatal("the state still lists the blob")
	}
	// A hold of a dropped blob changes nothing.
	before := snapshotBytes(t, s)
	mustApply(t, s, appendHoldCommand(nil, h1, []Digest{ref.digest}))
	if !bytes.Equal(before, snapshotBytes(t, s)) {
		t.Fatal("a hold of a dropped blob changed the state")
	}
	if err := checkState(s); err != nil {
		t.Fatal(err)
	}
}

// A blob records at most MaxBlobHolders holders; holds of further hosts are applied and
// change nothing.
func TestApplyBlobHolderLimit(t *testing.T) {
	s := newState(t)
	mustApply(t, s, blobCmd("c", "k", "v", []holder{testHolder("h000", 1)}))
	d := DigestOf([]byte("v"))
	for i := 1; i < MaxBlobHolders+10; i++ {
		mustApply(t, s, appendHoldCommand(nil, testHolder(fmt.Sprintf("h%03d", i), 1), []Digest{d}))
	}
	info, _ := blobOf(s, "v")
	if len(info.holders) != MaxBlobHolders {
		t.Fatalf("%d holders, want %d", len(info.holders), MaxBlobHolders)
	}
	if err := checkState(s); err != nil {
		t.Fatal(err)
	}
	// A recorded holder still moves.
	mustApply(t, s, appendHoldCommand(nil, testHolder("h000", 2), []Digest{d}))
	if info, _ := blobOf(s, "v"); info.holders[0].endpoints[0].Port != 2 {
		t.Fatalf("holder h000 at %v", info.holders[0].endpoints)
	}
	snap := snapshotBytes(t, s)
	again := newState(t)
	if err := again.Restore(bytes.NewReader(snap), 1); err != nil {
		t.Fatalf("a snapshot with the most holders is refused: %v", err)
	}
}

// blobState returns a state with inline values and blobs shared between keys.
func blobState(t testing.TB) *ReplicatedState {
	t.Helper()
	s := newState(t)
	mustApply(t, s, writeCmd("apps", "tiny", "v", "app"))
	mustApply(t, s, blobCmd("apps", "echo", "echo archive", []holder{testHolder("h1", 1)}, "app"))
	mustApply(t, s, blobCmd("apps", "web", "web archive", []holder{testHolder("h2", 2)}, "app", "web"))
	mustApply(t, s, blobCmd("images", "web", "web archive", []holder{testHolder("h1", 1)}))
	mustApply(t, s, appendHoldCommand(nil, testHolder("h0", 5), []Digest{DigestOf([]byte("web archive"))}))
	return s
}

func TestBlobSnapshotRoundTrip(t *testing.T) {
	a := blobState(t)
	snap := snapshotBytes(t, a)
	if !bytes.HasPrefix(snap, []byte("\x94\xafcocaine-storage\x02\x02\x02")) {
		t.Fatalf("a snapshot with blobs starts % x, want version 2 with 2 collections and 2 blobs", snap[:20])
	}
	b := newState(t)
	if err := b.Restore(bytes.NewReader(snap), 1); err != nil {
		t.Fatal(err)
	}
	if err := checkState(b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snap, snapshotBytes(t, b)) {
		t.Fatal("a restored state writes another snapshot")
	}
	if info, ok := blobOf(b, "web archive"); !ok || info.refs != 2 || !slices.Equal(hosts(info.holders), []string{"h0", "h1", "h2"}) {
		t.Fatalf("restored blob %+v", info)
	}
	// The state restored from the snapshot goes on as the original does.
	for _, s := range []*ReplicatedState{a, b} {
		mustApply(t, s, appendRemoveCommand(nil, "images", "web"))
		mustApply(t, s, appendRemoveCommand(nil, "apps", "echo"))
	}
	if !bytes.Equal(snapshotBytes(t, a), snapshotBytes(t, b)) {
		t.Fatal("the restored state diverged")
	}
	// Without blobs, the snapshot is in version 1 again.
	for _, s := range []*ReplicatedState{a, b} {
		mustApply(t, s, appendRemoveCommand(nil, "apps", "web"))
	}
	if snap := snapshotBytes(t, a); !bytes.HasPrefix(snap, []byte("\x93\xafcocaine-storage\x01\x01")) {
		t.Fatalf("a snapshot without blobs starts % x, want version 1", snap[:20])
	}
}

// snapshotV1 is a snapshot as the builds before the blob store wrote it (c/k = "v"
// tagged a and b, c/l = "" tagged b, d/k = "w"). It must restore for as long as
// such snapshots may exist.
const snapshotV1 = "\x93\xafcocaine-storage\x01\x02\x92\xa1c\x02\x93\xa1k\xa1v\x92\xa1a\xa1b\x93\xa1l\xa0\x91\xa1b\x92\xa1d\x01\x93\xa1k\xa1w\x90"

func TestRestoreVersion1(t *testing.T) {
	s := newState(t)
	if err := s.Restore(strings.NewReader(snapshotV1), 1); err != nil {
		t.Fatal(err)
	}
	if got := snapshotBytes(t, s); string(got) != snapshotV1 {
		t.Fatalf("restored and written again: % x", got)
	}
	if v, ok := readValue(s, "c", "k"); !ok || string(v) != "v" {
		t.Fatalf("read = %q, %v", v, ok)
	}
	if got := s.find("c", []string{"b"}); !slices.Equal(got, []string{"k", "l"}) {
		t.Fatalf("find = %q", got)
	}
}

func TestRestoreBlobRejects(t *testing.T) {
	d1, d2 := DigestOf([]byte("1")), DigestOf([]byte("2"))
	if bytes.Compare(d1[:], d2[:]) > 0 {
		d1, d2 = d2, d1
	}
	h := []any{"h", []any{[]any{"127.0.0.1", 1}}}
	hdr := func(collections, blobs int) []any {
		return []any{snapshotMagic, blobSnapshotVersion, collections, blobs}
	}
	ref := func(key string, d Digest, size int) []any { return []any{key, d[:], size, []string{}} }
	rec := func(d Digest, size int, hs ...any) []any { return []any{d[:], size, hs} }
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"a reference in version 1", snapshotOf(t, []any{snapshotMagic, 1, 1}, []any{"c", 1}, ref("k", d1, 1))},
		{"a missing blob record", snapshotOf(t, hdr(1, 0), []any{"c", 1}, ref("k", d1, 1))},
		{"an unreferenced blob record", snapshotOf(t, hdr(1, 2), []any{"c", 1}, ref("k", d1, 1), rec(d1, 1, h), rec(d2, 1, h))},
		{"a blob record of another digest", snapshotOf(t, hdr(1, 1), []any{"c", 1}, ref("k", d1, 1), rec(d2, 1, h))},
		{"a blob record of another size", snapshotOf(t, hdr(1, 1), []any{"c", 1}, ref("k", d1, 1), rec(d1, 2, h))},
		{"two sizes in the entries", snapshotOf(t, hdr(1, 1), []any{"c", 2}, ref("k", d1, 1), ref("l", d1, 2), rec(d1, 1, h))},
		{"blob records out of order", snapshotOf(t, hdr(1, 2), []any{"c", 2}, ref("k", d1, 1), ref("l", d2, 1), rec(d2, 1, h), rec(d1, 1, h))},
		{"a blob without holders", snapshotOf(t, hdr(1, 1), []any{"c", 1}, ref("k", d1, 1), rec(d1, 1))},
		{"holders out of order", snapshotOf(t, hdr(1, 1), []any{"c", 1}, ref("k", d1, 1), rec(d1, 1, []any{"z", h[1]}, h))},
		{"a missing blob record at the end", snapshotOf(t, hdr(1, 1), []any{"c", 1}, ref("k", d1, 1))},
		{"a blob record too long", snapshotOf(t, hdr(1, 1), []any{"c", 1}, ref("k", d1, 1), append(rec(d1, 1, h), 0))},
		{"a short digest", snapshotOf(t, hdr(1, 1), []any{"c", 1}, []any{"k", d1[:4], 1, []string{}}, rec(d1, 1, h))},
		{"a size over the cap", snapshotOf(t, hdr(1, 1), []any{"c", 1}, ref("k", d1, MaxBlobSizeLimit+1), rec(d1, MaxBlobSizeLimit+1, h))},
		{"an entry of five elements", snapshotOf(t, hdr(1, 1), []any{"c", 1}, append(ref("k", d1, 1), 0), rec(d1, 1, h))},
		{"a trailing record", append(snapshotOf(t, hdr(1, 1), []any{"c", 1}, ref("k", d1, 1), rec(d1, 1, h)), 0x90)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := blobState(t)
			before := snapshotBytes(t, s)
			err := s.Restore(bytes.NewReader(tc.data), 9)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Restore = %v, want ErrCorrupt", err)
			}
			if !bytes.Equal(before, snapshotBytes(t, s)) {
				t.Fatal("a failed Restore changed the state")
			}
		})
	}
	// The well-formed neighbour of those cases restores.
	ok := snapshotOf(t, hdr(1, 1), []any{"c", 2}, ref("k", d1, 1), ref("l", d1, 1), rec(d1, 1, h))
	if err := newState(t).Restore(bytes.NewReader(ok), 9); err != nil {
		t.Fatalf("Restore = %v", err)
	}
}

// Every proper prefix of a snapshot with blobs is refused.
func TestRestoreBlobTruncated(t *testing.T) {
	full := snapshotBytes(t, blobState(t))
	for n := range len(full) {
		if err := newState(t).Restore(bytes.NewReader(full[:n]), 1); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Restore of %d of %d bytes = %v, want ErrCorrupt", n, len(full), err)
		}
	}
}

func TestBlobRecordBound(t *testing.T) {
	if maxBlobRecord >= maxSnapshotRecord {
		t.Fatalf("a blob record may take %d bytes, the reader's bound is %d", maxBlobRecord, maxSnapshotRecord)
	}
}
