package rpc

// Abandon stops receiving on the channel: the session forgets it, so its Receiver gets
// nothing more, and later messages from the peer on its id are dropped (client sessions)
// or close the connection (strict sessions), as for any closed channel. Sending is not
// affected. Use it when a channel is given up before the peer ended its direction, such
// as a request that timed out, so the session does not keep it for the peer's lifetime.
func (t *Tx) Abandon() { t.s.forget(t.id) }
