package raft

import (
	"bytes"
	"io"
	"slices"
	"testing"
)

// FuzzEnvelope: the log entry decoder never panics, and what it accepts re-encodes to
// the same bytes.
func FuzzEnvelope(f *testing.F) {
	f.Add(appendEnvelope(nil, nil))
	f.Add(appendEnvelope(nil, [][]byte{[]byte("set a b")}))
	f.Add(appendEnvelope(nil, [][]byte{{}, []byte("x"), bytes.Repeat([]byte{0xff}, 300)}))
	f.Add([]byte{envelopeTag, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{envelopeTag, 2, 5, 'a'})
	f.Fuzz(func(t *testing.T, data []byte) {
		cmds, err := decodeEnvelope(data)
		if err != nil {
			return
		}
		if again := appendEnvelope(nil, cmds); !bytes.Equal(again, data) {
			// Uvarints have one canonical form only if the input used it; accept
			// non-canonical lengths but require the same commands back.
			back, err := decodeEnvelope(again)
			if err != nil || len(back) != len(cmds) {
				t.Fatalf("re-encoding changed the commands")
			}
			for i := range back {
				if !bytes.Equal(back[i], cmds[i]) {
					t.Fatalf("command %d changed", i)
				}
			}
		}
	})
}

// FuzzMuxRestore: a mux snapshot decoder never panics, and a rejected snapshot leaves
// every part as it was.
func FuzzMuxRestore(f *testing.F) {
	good := func(parts map[byte]string) []byte {
		m := NewMux()
		for tag, v := range parts {
			s := newKV()
			s.m["v"] = v
			m.Register(tag, s)
		}
		snap, _ := m.Snapshot()
		var b bytes.Buffer
		snap.Persist(&b)
		return b.Bytes()
	}
	f.Add(good(map[byte]string{'u': "one", 's': "two"}))
	f.Add(good(map[byte]string{'u': "one"}))
	f.Add([]byte("CMX1\x00\x00\x00\x00\x00"))
	f.Add([]byte("CMX1u\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m := NewMux()
		u, s := newKV(), newKV()
		u.m["v"], s.m["v"] = "u-before", "s-before"
		m.Register('u', u)
		m.Register('s', s)
		if err := m.Restore(bytes.NewReader(data), 7); err != nil {
			if u.m["v"] != "u-before" || s.m["v"] != "s-before" {
				t.Fatalf("a rejected snapshot changed state: %v %v", u.m, s.m)
			}
		}
	})
}

// FuzzBackup: the backup parser never panics and accepts only what checks out.
func FuzzBackup(f *testing.F) {
	var b bytes.Buffer
	b.Write(backupMagic)
	b.Write([]byte{0, 0, 0, 2})
	b.WriteString("{}")
	f.Add(b.Bytes())
	f.Add(append(slices.Clone(backupMagic), 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4))
	f.Fuzz(func(t *testing.T, data []byte) {
		bm, state, err := parseBackup(data)
		if err == nil && int64(len(state)) != bm.Size {
			t.Fatalf("accepted a backup whose size does not match")
		}
		_ = io.Discard
	})
}
