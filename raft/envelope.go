package raft

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A log entry's data is an envelope holding one or more commands, so that concurrent
// proposals share one entry and one fsync:
//
//	'B' uvarint(n) n × (uvarint(len) bytes)
//
// An envelope with no command marks the start of a leader's term (see Node.leadTerm).
const envelopeTag = 'B'

// maxEnvelopeCommands bounds the count an envelope may claim, so a damaged entry cannot
// make the decoder allocate a huge slice.
const maxEnvelopeCommands = 1 << 20

var errEnvelope = errors.New("raft: malformed log entry")

// appendEnvelope appends the envelope of cmds to b.
func appendEnvelope(b []byte, cmds [][]byte) []byte {
	b = append(b, envelopeTag)
	b = binary.AppendUvarint(b, uint64(len(cmds)))
	for _, c := range cmds {
		b = binary.AppendUvarint(b, uint64(len(c)))
		b = append(b, c...)
	}
	return b
}

// envelopeSize is the encoded size of an envelope of n commands totalling size bytes,
// at most (each length prefix is at most binary.MaxVarintLen64 bytes).
func envelopeSize(n, size int) int { return 1 + binary.MaxVarintLen64*(n+1) + size }

// decodeEnvelope splits an envelope into its commands. The commands alias data.
func decodeEnvelope(data []byte) ([][]byte, error) {
	if len(data) == 0 || data[0] != envelopeTag {
		return nil, fmt.Errorf("%w: no envelope tag", errEnvelope)
	}
	rest := data[1:]
	n, k := binary.Uvarint(rest)
	if k <= 0 {
		return nil, fmt.Errorf("%w: bad command count", errEnvelope)
	}
	rest = rest[k:]
	// Every command takes at least one byte (its length), so the count cannot exceed
	// what is left.
	if n > maxEnvelopeCommands || n > uint64(len(rest)) {
		return nil, fmt.Errorf("%w: %d commands in %d bytes", errEnvelope, n, len(rest))
	}
	cmds := make([][]byte, n)
	for i := range cmds {
		l, k := binary.Uvarint(rest)
		if k <= 0 {
			return nil, fmt.Errorf("%w: bad length of command %d", errEnvelope, i)
		}
		rest = rest[k:]
		if l > uint64(len(rest)) {
			return nil, fmt.Errorf("%w: command %d claims %d bytes, %d left", errEnvelope, i, l, len(rest))
		}
		cmds[i] = rest[:l:l]
		rest = rest[l:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errEnvelope, len(rest))
	}
	return cmds, nil
}

// isEmptyEnvelope reports whether data is an envelope of no command.
func isEmptyEnvelope(data []byte) bool {
	return len(data) == 2 && data[0] == envelopeTag && data[1] == 0
}
