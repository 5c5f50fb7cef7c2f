package rpc

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Server serves one service (a Dispatcher) on a listener: one strict Session per accepted
// connection, as every Cocaine service has its own port.
type Server struct {
	d   *Dispatcher
	cfg SessionConfig
	log *slog.Logger

	mu       sync.Mutex
	sessions map[*Session]struct{}
}

// NewServer returns a server for d. cfg.Dispatcher and cfg.Strict are set by the server.
func NewServer(d *Dispatcher, cfg SessionConfig) *Server {
	cfg.Dispatcher = d
	cfg.Strict = true
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{d: d, cfg: cfg, log: log, sessions: map[*Session]struct{}{}}
}

// Serve accepts connections until ctx is cancelled or the listener fails. It closes the
// listener and every session, and returns when all their goroutines have exited: nil
// after cancellation.
func (srv *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer srv.closeAll()

	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// Out of descriptors and the like: back off rather than spin (as net/http).
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			srv.log.Warn("accept failed", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
				continue
			case <-ctx.Done():
				return nil
			}
		}
		delay = 0
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
			tc.SetKeepAlive(true)
		}
		s := NewSession(conn, srv.cfg)
		srv.mu.Lock()
		srv.sessions[s] = struct{}{}
		srv.mu.Unlock()
		wg.Go(func() {
			if err := s.Run(ctx); err != nil {
				srv.log.Warn("closed connection on protocol error", "remote", conn.RemoteAddr().String(), "err", err)
			}
			srv.mu.Lock()
			delete(srv.sessions, s)
			srv.mu.Unlock()
		})
	}
}

func (srv *Server) closeAll() {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for s := range srv.sessions {
		s.Close()
	}
}

// Sessions reports the number of open connections.
func (srv *Server) Sessions() int {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return len(srv.sessions)
}
