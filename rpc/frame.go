package rpc

import (
	"errors"
	"fmt"
	"io"
)

// Frame is one message on the wire: [channel, type, args, headers?] (protocol.md §1.3).
//
// Args holds the encoded args array. A Frame returned by a FrameReader aliases the
// reader's buffer, which the reader never overwrites: the frame stays valid for as long as
// it is referenced.
type Frame struct {
	Channel uint64
	Type    uint64
	Args    Raw // an encoded array, possibly empty ([]), never nil on a decoded frame
	Headers []Header
}

// emptyArgs is the encoding of [].
var emptyArgs = Raw{0x90}

// AppendFrame appends f in the form the core emits: always four elements, old-spec raw
// strings, headers as given (the session adds the trace headers itself). A nil Args is
// encoded as [].
func AppendFrame(b []byte, f *Frame, enc *HeaderEncoder) []byte {
	b = append(b, 0x94)
	b = AppendUint(b, f.Channel)
	b = AppendUint(b, f.Type)
	if len(f.Args) == 0 {
		b = append(b, emptyArgs...)
	} else {
		b = append(b, f.Args...)
	}
	b = AppendArrayHeader(b, len(f.Headers))
	for _, h := range f.Headers {
		b = enc.AppendHeader(b, h)
	}
	return b
}

// AppendArgs encodes values as an args array.
func AppendArgs(b []byte, args ...any) ([]byte, error) {
	b = AppendArrayHeader(b, len(args))
	for _, a := range args {
		var err error
		if b, err = AppendValue(b, a); err != nil {
			return b, err
		}
	}
	return b, nil
}

// DecodeFrame decodes one complete frame from b (which must hold exactly one object),
// applying stored header literals to table. Errors wrap ErrParse, ErrFrameFormat or
// ErrHPACK, each fatal to a connection.
func DecodeFrame(b []byte, table *HeaderTable) (Frame, error) {
	// Parse the whole object before checking its shape, as the original does: undecodable
	// bytes anywhere (0xc1, a truncated object) are a parse error, not a format error.
	end, err := skipObject(b, 0)
	if err != nil {
		return Frame{}, fmt.Errorf("%w: %v", ErrParse, err)
	}
	if end != len(b) {
		return Frame{}, fmt.Errorf("%w: %d bytes after the frame", ErrParse, len(b)-end)
	}
	return decodeFrame(b, table)
}

// decodeFrame is DecodeFrame for b that holds exactly one well-formed object.
func decodeFrame(b []byte, table *HeaderTable) (Frame, error) {
	var f Frame
	d := NewDecoder(b)
	n, err := d.ArrayLen()
	if err != nil {
		if errors.Is(err, ErrInvalidArgument) {
			return f, fmt.Errorf("%w: a frame must be an array, got %s", ErrFrameFormat, kindOf(b[0]))
		}
		return f, err
	}
	if n < 3 {
		return f, fmt.Errorf("%w: a frame has at least 3 elements, got %d", ErrFrameFormat, n)
	}
	if f.Channel, err = d.Uint(); err != nil {
		return f, fmt.Errorf("%w: channel id: %v", ErrFrameFormat, err)
	}
	if f.Type, err = d.Uint(); err != nil {
		return f, fmt.Errorf("%w: message type: %v", ErrFrameFormat, err)
	}
	if d.Peek() != KindArray {
		return f, fmt.Errorf("%w: args must be an array, got %s", ErrFrameFormat, d.Peek())
	}
	if f.Args, err = d.Raw(); err != nil {
		return f, err
	}
	if n >= 4 {
		if d.Peek() != KindArray {
			return f, fmt.Errorf("%w: headers must be an array, got %s", ErrFrameFormat, d.Peek())
		}
		if f.Headers, err = table.DecodeHeaders(d, nil); err != nil {
			return f, err
		}
		for i := 4; i < n; i++ { // later elements are ignored, as the core does
			if err := d.Skip(); err != nil {
				return f, err
			}
		}
	}
	if d.Remaining() != 0 {
		return f, fmt.Errorf("%w: %d bytes after the frame", ErrParse, d.Remaining())
	}
	return f, nil
}

// DefaultMaxFrameSize bounds one frame unless configured otherwise: large enough for app
// archives uploaded through storage, small enough that a hostile length prefix cannot make
// the daemon allocate gigabytes.
const DefaultMaxFrameSize = 64 << 20

const minReadBuffer = 64 << 10 // as the original's readable_stream

// FrameReader splits a byte stream into frames. It is resumable across partial reads: the
// scan state survives between reads, so a frame that arrives one byte at a time costs the
// same as one that arrives whole. A frame whose bytes (or whose announced lengths) exceed
// MaxFrameSize fails with ErrFrameTooLarge before anything of that size is allocated.
//
// A FrameReader is not safe for concurrent use.
type FrameReader struct {
	r            io.Reader
	MaxFrameSize int
	Table        HeaderTable // the peer's direction

	buf     []byte // buf[start:end] is unconsumed input; buf is never overwritten once handed out
	start   int
	end     int
	scanOff int    // how far the pending frame is scanned, relative to start
	pending uint64 // objects of the pending frame still to scan; 0 = not started
}

// NewFrameReader returns a reader with the given limit (DefaultMaxFrameSize if <= 0).
func NewFrameReader(r io.Reader, maxFrameSize int) *FrameReader {
	if maxFrameSize <= 0 {
		maxFrameSize = DefaultMaxFrameSize
	}
	return &FrameReader{r: r, MaxFrameSize: maxFrameSize}
}

// Next returns the next frame. io.EOF means the stream ended cleanly between frames;
// io.ErrUnexpectedEOF means it ended inside one.
func (fr *FrameReader) Next() (Frame, error) {
	raw, err := fr.NextRaw()
	if err != nil {
		return Frame{}, err
	}
	return decodeFrame(raw, &fr.Table) // NextRaw has parsed it
}

// NextRaw returns the bytes of the next complete MessagePack object without decoding it.
func (fr *FrameReader) NextRaw() ([]byte, error) {
	for {
		n, err := fr.scan()
		if err != nil {
			return nil, err
		}
		if n > 0 {
			obj := fr.buf[fr.start : fr.start+n : fr.start+n]
			fr.start += n
			fr.scanOff, fr.pending = 0, 0
			return obj, nil
		}
		if err := fr.fill(); err != nil {
			if err == io.EOF && fr.end > fr.start {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// Buffered reports how many bytes have been read but not returned.
func (fr *FrameReader) Buffered() int { return fr.end - fr.start }

// fill reads more input, moving the unconsumed tail to a fresh buffer when the current one
// is full. Frames already returned keep the old buffer alive; it is never written again.
func (fr *FrameReader) fill() error {
	if fr.end == len(fr.buf) {
		size := max(minReadBuffer, 2*(fr.end-fr.start))
		if limit := fr.MaxFrameSize + minReadBuffer; size > limit {
			size = limit
		}
		nb := make([]byte, size)
		fr.end = copy(nb, fr.buf[fr.start:fr.end])
		fr.buf, fr.start = nb, 0
	}
	n, err := fr.r.Read(fr.buf[fr.end:])
	fr.end += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// scan continues scanning the pending object. It returns its length once complete, or 0
// when more input is needed.
func (fr *FrameReader) scan() (int, error) {
	b := fr.buf[fr.start:fr.end]
	if fr.pending == 0 {
		if len(b) == 0 {
			return 0, nil
		}
		fr.pending = 1
	}
	off := fr.scanOff
	limit := uint64(fr.MaxFrameSize)
	for fr.pending > 0 {
		if off >= len(b) {
			break
		}
		c := b[off]
		size := 1
		var body, items uint64
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		case c <= 0x8f:
			items = 2 * uint64(c&0x0f)
		case c <= 0x9f:
			items = uint64(c & 0x0f)
		case c <= 0xbf:
			body = uint64(c & 0x1f)
		default:
			w, fixed, n, err := lengthField(b, off+1, c)
			if err == errShort {
				fr.scanOff = off
				return fr.checkSize(off)
			}
			if err != nil {
				return 0, fmt.Errorf("%w: %v", ErrParse, err)
			}
			size += w
			switch kindOf(c) {
			case KindArray:
				items = n
			case KindMap:
				items = 2 * n
			default:
				body = n + fixed
			}
		}
		// Check the announced lengths against the limit before waiting for them.
		if uint64(off)+uint64(size)+body > limit {
			return 0, fmt.Errorf("%w: an object announces %d bytes, the limit is %d", ErrFrameTooLarge, body, limit)
		}
		if uint64(len(b)-off-size) < body {
			fr.scanOff = off // wait for the whole payload; rescanning a header is cheap
			return fr.checkSize(off)
		}
		off += size + int(body)
		fr.pending--
		// Each pending object takes at least a byte, so this also bounds the count.
		if fr.pending+items > limit-uint64(off) {
			return 0, fmt.Errorf("%w: an array or map announces %d elements, the limit is %d bytes", ErrFrameTooLarge, items, limit)
		}
		fr.pending += items
	}
	fr.scanOff = off
	if fr.pending == 0 {
		return off, nil
	}
	return fr.checkSize(off)
}

func (fr *FrameReader) checkSize(scanned int) (int, error) {
	if scanned > fr.MaxFrameSize {
		return 0, fmt.Errorf("%w: more than %d bytes", ErrFrameTooLarge, fr.MaxFrameSize)
	}
	return 0, nil
}
