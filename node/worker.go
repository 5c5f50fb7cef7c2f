package node

import (
	"errors"
	"fmt"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// The worker ("slave") state machine (plugins.md §2.11). Every method here runs on the
// engine loop, which owns the worker; the worker's session reader and its process
// waiter only post events to that loop.
//
//	spawning --spawned--> handshaking --handshake--> active --seal--> sealing
//	    |  (a handshake that arrives first is kept)    |                 | no channels left
//	    |                                               |                 | or seal-timeout
//	    |                                               +--terminate------+--> terminating
//	    |                                                                        | exited, or
//	    v                                                                        v terminate-timeout
//	 shutdown(reason) <-- any timeout, disconnect, exit, spawn error ---------- shutdown
//	    -> closed (a normal reason) | broken (an error): channels aborted with the
//	       reason, process killed, crash log written once it exited
type worker struct {
	e     *engine
	uuid  string
	state workerState

	proc       Process // nil until the isolate started it
	session    *rpc.Session
	control    *rpc.Tx // channel 1: heartbeats and terminate
	handshaken bool

	load     int
	channels map[*request]struct{}
	invokes  chan *request // assigned events for the worker's sender; closed at shutdown
	accepted uint64

	timer     *time.Timer // the current state's timeout
	idleTimer *time.Timer
	gen       uint64 // bumped on every state change; stale timer events compare it

	born, activeAt, lastBeat, idleSince time.Time
	out                                 *output

	shut         bool  // shutdown ran: the worker left the pool
	reason       error // why it is ending
	disconnected bool
	exited       bool
	exitErr      error
}

type workerState uint8

const (
	stateSpawning workerState = iota
	stateHandshaking
	stateActive
	stateSealing
	stateTerminating
	stateClosed
	stateBroken
)

var stateNames = [...]string{"spawning", "handshaking", "active", "sealing", "terminating", "closed", "broken"}

func (s workerState) String() string { return stateNames[s] }

// normal reports whether a worker ending for reason is part of the pool's life rather
// than a failure: no crash log, no respawn back-off.
func normal(reason error) bool {
	return reason == nil || errors.Is(reason, ErrShuttingDown) || errors.Is(reason, ErrSealing) ||
		errors.Is(reason, ErrIdle) || errors.Is(reason, ErrCommittedSuicide)
}

// arm replaces the state timer: after d, fn runs on the loop unless the state changed.
func (w *worker) arm(d time.Duration, fn func()) {
	if w.timer != nil {
		w.timer.Stop()
	}
	w.gen++
	gen := w.gen
	w.timer = w.e.after(d, func() {
		if w.gen == gen && !w.shut {
			fn()
		}
	})
}

func (w *worker) setState(s workerState) {
	w.state = s
	w.gen++
}

// spawned is the isolate's answer.
func (w *worker) spawned(proc Process, err error) {
	if err != nil {
		w.shutdown(fmt.Errorf("%w: spawn: %v", ErrActivate, err))
		w.e.finalize(w) // there is no process to wait for
		return
	}
	w.proc = proc
	w.e.wait(w)
	if w.shut {
		proc.Kill() // it timed out or the app stopped while the isolate worked
		return
	}
	if w.handshaken {
		w.activate()
		return
	}
	w.setState(stateHandshaking)
	w.arm(w.e.profile.HandshakeTimeout, func() {
		w.shutdown(fmt.Errorf("%w: no handshake within %s", ErrHandshakeTimeout, w.e.profile.HandshakeTimeout))
	})
}

// handshake binds the worker's connection. It may come before spawned.
func (w *worker) handshake(s *rpc.Session, control *rpc.Tx) bool {
	if w.shut || w.handshaken || (w.state != stateSpawning && w.state != stateHandshaking) {
		return false
	}
	w.session, w.control, w.handshaken = s, control, true
	if w.state == stateHandshaking {
		w.activate()
	}
	return true
}

func (w *worker) activate() {
	now := w.e.now()
	// the sender's buffer: one slot per channel the worker may have open at once
	w.invokes = make(chan *request, min(w.e.profile.Concurrency, 1024))
	invokes, s, e := w.invokes, w.session, w.e
	e.deliver(func() {
		for r := range invokes {
			e.open(w, s, r)
		}
	})
	w.setState(stateActive)
	w.activeAt, w.lastBeat, w.idleSince = now, now, now
	w.armHeartbeat(w.e.profile.HeartbeatTimeout)
	w.armIdle()
	w.e.log.Info("worker active", "worker_id", w.uuid)
	w.e.updatePublish()
	w.e.rebalanceEvents()
}

func (w *worker) armHeartbeat(d time.Duration) {
	w.arm(d, func() {
		hb := w.e.profile.HeartbeatTimeout
		if gap := w.e.now().Sub(w.lastBeat); gap < hb {
			w.armHeartbeat(hb - gap)
			return
		}
		w.shutdown(fmt.Errorf("%w: no heartbeat for %s", ErrHeartbeatTimeout, hb))
	})
}

func (w *worker) beat() {
	if !w.shut {
		w.lastBeat = w.e.now()
	}
}

// armIdle retires the worker once it has been idle for the profile's idle-timeout, in
// automatic mode (the original parsed idle-timeout but never used it; we shrink with it).
func (w *worker) armIdle() {
	idle := w.e.profile.IdleTimeout
	if idle <= 0 {
		return
	}
	if w.idleTimer != nil {
		w.idleTimer.Stop()
	}
	since := w.idleSince
	w.idleTimer = w.e.after(idle, func() {
		if w.shut || w.state != stateActive || w.load > 0 || !w.idleSince.Equal(since) || w.e.target > 0 {
			return
		}
		w.e.log.Info("retiring idle worker", "worker_id", w.uuid, "idle", idle.String())
		w.seal(ErrIdle)
	})
}

// seal stops giving the worker events; it terminates once its channels are done.
func (w *worker) seal(reason error) {
	if w.shut || w.state >= stateSealing {
		return
	}
	if w.load == 0 || w.control == nil {
		w.terminate(reason)
		return
	}
	w.setState(stateSealing)
	w.reason = reason
	w.arm(w.e.profile.SealTimeout, func() { w.terminate(reason) })
}

// terminate sends terminate(code, message) and gives the worker terminate-timeout to exit.
func (w *worker) terminate(reason error) {
	if w.shut || w.state == stateTerminating {
		return
	}
	if w.control == nil || w.proc == nil {
		w.shutdown(reason)
		return
	}
	e, control := wire(reason), w.control
	// Off the loop, as every send to a worker: one that stopped reading must not stall
	// the app; it gets killed when terminate-timeout passes.
	w.e.deliver(func() { control.Send(1, e.Code, e.Message) })
	w.setState(stateTerminating)
	w.reason = reason
	w.arm(w.e.profile.TerminateTimeout, func() {
		w.shutdown(fmt.Errorf("%w: the worker did not exit within %s (after: %v)", ErrTerminateTimeout, w.e.profile.TerminateTimeout, reason))
	})
}

// suicide is the worker's own terminate.
func (w *worker) suicide(code int, msg string) {
	if w.shut || w.state == stateTerminating {
		return // the echo of our terminate, or a worker already on its way out
	}
	w.shutdown(fmt.Errorf("%w: code %d: %s", ErrCommittedSuicide, code, msg))
}

// disconnect: the worker's connection ended. Its exit status usually follows at once and
// says more (a crash, the OOM killer), so wait briefly for it before giving up.
func (w *worker) disconnect() {
	w.disconnected = true
	if w.shut || w.state == stateTerminating {
		return
	}
	if w.exited {
		w.shutdown(w.exitReason())
		return
	}
	grace := min(w.e.profile.TerminateTimeout, time.Second)
	w.arm(grace, func() {
		w.shutdown(fmt.Errorf("%w: worker %s closed its connection", ErrControlIPC, w.uuid))
	})
}

// exit: the process is gone, and with it the isolate's resources.
func (w *worker) exit(err error) {
	w.exited, w.exitErr = true, err
	if !w.shut {
		if w.state == stateTerminating {
			w.shutdown(w.reason)
		} else {
			w.shutdown(w.exitReason())
		}
	}
	w.e.finalize(w)
}

func (w *worker) exitReason() error {
	if w.exitErr == nil {
		return fmt.Errorf("%w: worker %s exited with status 0 without being asked to", ErrControlIPC, w.uuid)
	}
	return fmt.Errorf("%w: worker %s %v", ErrControlIPC, w.uuid, w.exitErr)
}

// shutdown takes the worker out of the pool: its channels get reason, its connection
// closes, its process is killed. The engine forgets it once the process has exited.
func (w *worker) shutdown(reason error) {
	if w.shut {
		return
	}
	w.shut = true
	w.reason = reason
	if w.timer != nil {
		w.timer.Stop()
	}
	if w.idleTimer != nil {
		w.idleTimer.Stop()
	}
	w.gen++
	if normal(reason) {
		w.state = stateClosed
		w.e.log.Info("worker stopped", "worker_id", w.uuid, "reason", reason.Error())
	} else {
		w.state = stateBroken
		w.e.log.Warn("worker failed", "worker_id", w.uuid, "reason", reason.Error())
	}
	e := w.e
	delete(e.workers, w.uuid)
	e.dying[w] = struct{}{}
	for r := range w.channels {
		r.abort(reason) // releases r, which deletes it from w.channels
	}
	if w.invokes != nil {
		close(w.invokes) // the sender finishes what it has: those opens fail and come back
	}
	if w.session != nil {
		w.session.Close()
	}
	if w.proc != nil && !w.exited {
		w.proc.Kill()
	}
	if !normal(reason) {
		e.stats.crashed++
		e.backOff()
	}
	e.updatePublish()
	e.rebalanceWorkers()
}
