package rpc

import (
	"io"
	"runtime"
	"sync"
)

// writer batches frames from many goroutines into few writes. Producers encode straight
// into the pending buffer under mu; one loop goroutine swaps it out and writes it. With
// many concurrent channels one write(2) carries many frames.
type writer struct {
	w          io.Writer
	maxPending int
	enc        HeaderEncoder // the send direction's header table; used under mu, in frame order

	mu    sync.Mutex
	space sync.Cond // signalled when the loop drained the buffer or failed
	buf   []byte
	spare []byte
	err   error // sticky: once set, nothing more is written

	// wake has room for one token: a token means "the buffer went from empty to
	// non-empty"; more would be redundant since the loop takes everything at once.
	wake chan struct{}
}

func newWriter(w io.Writer, maxPending int) *writer {
	// one token: "the buffer became non-empty"; the loop drains everything at once
	wr := &writer{w: w, maxPending: maxPending, wake: make(chan struct{}, 1)}
	wr.space.L = &wr.mu
	return wr
}

// frame appends one frame built by fn. It blocks while more than maxPending bytes wait to
// be written, so a peer that does not read slows its producers down instead of growing
// memory. If fn fails, nothing of it is written.
func (w *writer) frame(fn func(b []byte, enc *HeaderEncoder) ([]byte, error)) error {
	w.mu.Lock()
	for len(w.buf) > w.maxPending && w.err == nil {
		w.space.Wait()
	}
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	n := len(w.buf)
	b, err := fn(w.buf, &w.enc)
	if err != nil {
		w.buf = w.buf[:n]
		w.mu.Unlock()
		return err
	}
	w.buf = b
	w.mu.Unlock()
	if n == 0 {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// loop writes batches until done is closed or a write fails. When done is closed it
// writes what is pending first, so replies queued before a clean shutdown still go out.
// Once it returns, every later frame fails, so no producer waits for a loop that is gone.
func (w *writer) loop(done <-chan struct{}) error {
	defer w.fail(ErrNotConnected)
	for {
		select {
		case <-w.wake:
		case <-done:
			w.flush()
			return nil
		}
		// Let the goroutines that are about to queue frames too (many streams woken by
		// one event, many replies of one batch) do so first: one write then carries them
		// all instead of one write each.
		runtime.Gosched()
		if err := w.flush(); err != nil {
			return err
		}
	}
}

func (w *writer) flush() error {
	w.mu.Lock()
	out := w.buf
	w.buf, w.spare = w.spare[:0], nil
	w.mu.Unlock()
	if len(out) == 0 {
		return nil
	}
	_, err := w.w.Write(out)
	w.mu.Lock()
	if err != nil && w.err == nil {
		w.err = err
	}
	if cap(out) <= 4*w.maxPending { // do not keep a huge buffer after one big frame
		w.spare = out[:0]
	}
	w.space.Broadcast()
	w.mu.Unlock()
	return err
}

// fail makes every later frame fail with err and wakes blocked producers.
func (w *writer) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.space.Broadcast()
	w.mu.Unlock()
}
