package raft

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	hraft "github.com/hashicorp/raft"
)

// Member is one server of the cluster's configuration.
type Member struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
	Leader  bool   `json:"leader"`
	// Healthy is the leader's view: its heartbeats reach the server. Reported false
	// for every server but this one when the configuration comes from a server that
	// does not lead (no leader known).
	Healthy bool `json:"healthy"`
	// FailingSince is the last contact of a server whose heartbeats fail.
	FailingSince time.Time `json:"failing_since,omitzero"`
}

type joinRequest struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

type removeRequest struct {
	ID string `json:"id"`
}

// Join adds the server id at the raft address addr to the cluster, through the leader.
// The first Config.Voters servers become voters, later ones non-voters. Joining again
// with the same address is a no-op; with a new address the server's entry is replaced.
func (n *Node) Join(ctx context.Context, id, addr string) error {
	if id == "" || addr == "" {
		return errors.New("raft: join needs an id and an address")
	}
	req, _ := json.Marshal(joinRequest{ID: id, Address: addr})
	_, err := n.toLeader(ctx, true, func() ([]byte, error) { return nil, n.joinLocal(req) }, opJoin, req)
	return err
}

func (n *Node) joinLocal(payload []byte) error {
	var req joinRequest
	if err := json.Unmarshal(payload, &req); err != nil || req.ID == "" || req.Address == "" {
		return fmt.Errorf("raft: malformed join request: %v", err)
	}
	if ok, _ := n.Leadership(); !ok {
		return ErrNotLeader
	}
	servers, idx, err := n.configuration()
	if err != nil {
		return err
	}
	voters := 0
	for _, s := range servers {
		if s.ID == hraft.ServerID(req.ID) {
			if s.Address == hraft.ServerAddress(req.Address) {
				return nil
			}
			// Same server, new address: adding it again with its suffrage updates the
			// address in place.
			f := n.r.AddNonvoter(s.ID, hraft.ServerAddress(req.Address), idx, 0)
			if s.Suffrage == hraft.Voter {
				f = n.r.AddVoter(s.ID, hraft.ServerAddress(req.Address), idx, 0)
			}
			if err := f.Error(); err != nil {
				return mapApplyError(err)
			}
			n.log.Info("server address changed", "server", req.ID, "addr", req.Address)
			return nil
		}
		if s.Suffrage == hraft.Voter {
			voters++
		}
	}
	var f hraft.IndexFuture
	kind := "voter"
	if voters < n.cfg.Voters {
		f = n.r.AddVoter(hraft.ServerID(req.ID), hraft.ServerAddress(req.Address), idx, 0)
	} else {
		kind = "non-voter"
		f = n.r.AddNonvoter(hraft.ServerID(req.ID), hraft.ServerAddress(req.Address), idx, 0)
	}
	if err := f.Error(); err != nil {
		return mapApplyError(err)
	}
	n.log.Info("server joined", "server", req.ID, "addr", req.Address, "as", kind)
	return nil
}

// Remove takes the server id out of the cluster, through the leader.
func (n *Node) Remove(ctx context.Context, id string) error {
	req, _ := json.Marshal(removeRequest{ID: id})
	_, err := n.toLeader(ctx, true, func() ([]byte, error) { return nil, n.removeLocal(req) }, opRemove, req)
	return err
}

func (n *Node) removeLocal(payload []byte) error {
	var req removeRequest
	if err := json.Unmarshal(payload, &req); err != nil || req.ID == "" {
		return fmt.Errorf("raft: malformed remove request: %v", err)
	}
	if ok, _ := n.Leadership(); !ok {
		return ErrNotLeader
	}
	servers, idx, err := n.configuration()
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(servers, func(s hraft.Server) bool { return s.ID == hraft.ServerID(req.ID) }) {
		return fmt.Errorf("%w: %s", ErrNotMember, req.ID)
	}
	if err := n.r.RemoveServer(hraft.ServerID(req.ID), idx, 0).Error(); err != nil {
		return mapApplyError(err)
	}
	n.log.Info("server removed", "server", req.ID)
	return nil
}

// Members lists the cluster's servers as the leader knows them, or as this server does
// when there is no leader.
func (n *Node) Members(ctx context.Context) ([]Member, error) {
	if err := n.wait(ctx); err != nil {
		return nil, err
	}
	// A bounded wait for the leader, then the local view.
	lctx, cancel := context.WithTimeout(ctx, 2*n.cfg.ElectionTimeout)
	defer cancel()
	out, err := n.toLeader(lctx, true, n.membersLocal, opMembers, nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return n.localMembers()
	}
	var ms []Member
	if err := json.Unmarshal(out, &ms); err != nil {
		return nil, fmt.Errorf("raft: bad members reply: %w", err)
	}
	return ms, nil
}

func (n *Node) membersLocal() ([]byte, error) {
	if ok, _ := n.Leadership(); !ok {
		return nil, ErrNotLeader
	}
	servers, _, err := n.configuration()
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	ms := make([]Member, len(servers))
	for i, s := range servers {
		since, failing := n.failing[string(s.ID)]
		ms[i] = Member{
			ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == hraft.Voter,
			Leader: string(s.ID) == n.cfg.ID, Healthy: !failing, FailingSince: since,
		}
	}
	n.mu.Unlock()
	return json.Marshal(ms)
}

func (n *Node) localMembers() ([]Member, error) {
	servers, _, err := n.configuration()
	if err != nil {
		return nil, err
	}
	ms := make([]Member, len(servers))
	for i, s := range servers {
		ms[i] = Member{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == hraft.Voter, Healthy: string(s.ID) == n.cfg.ID}
	}
	return ms, nil
}

// configuration is the latest configuration and its index.
func (n *Node) configuration() ([]hraft.Server, uint64, error) {
	f := n.r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, 0, fmt.Errorf("raft: configuration: %w", err)
	}
	return f.Configuration().Servers, f.Index(), nil
}

// Leave takes this server out of the cluster: a leader hands leadership to another voter
// first. The only voter of a cluster does not leave (nothing would remain).
func (n *Node) Leave(ctx context.Context) error {
	if err := n.wait(ctx); err != nil {
		return err
	}
	return n.leave(ctx)
}

func (n *Node) leave(ctx context.Context) error {
	servers, _, err := n.configuration()
	if err != nil {
		return err
	}
	others := 0
	for _, s := range servers {
		if string(s.ID) != n.cfg.ID && s.Suffrage == hraft.Voter {
			others++
		}
	}
	if !slices.ContainsFunc(servers, func(s hraft.Server) bool { return string(s.ID) == n.cfg.ID }) {
		return nil // not a member (any more)
	}
	if others == 0 {
		n.log.Info("not leaving: this is the cluster's only voter")
		return nil
	}
	if n.r.State() == hraft.Leader {
		if err := n.r.LeadershipTransfer().Error(); err != nil {
			n.log.Warn("leadership transfer failed; removing this server as leader", "err", err)
		}
	}
	req, _ := json.Marshal(removeRequest{ID: n.cfg.ID})
	for attempt := 0; ; attempt++ {
		st := n.leadership()
		switch {
		case st.leader && st.ready:
			err = n.removeLocal(req)
		case st.leaderAddr != "" && st.leaderAddr != n.addr:
			_, err = n.peers.call(ctx, st.leaderAddr, opRemove, req)
		default:
			err = ErrNoLeader
		}
		if err == nil || errors.Is(err, ErrNotMember) {
			n.log.Info("left the cluster")
			return nil
		}
		if !retryable(err) && !errors.Is(err, errConnLost) {
			return err
		}
		t := time.NewTimer(min(10*time.Millisecond<<min(attempt, 6), n.cfg.ElectionTimeout))
		select {
		case <-st.changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("raft: leave: %w (last: %v)", ctx.Err(), err)
		}
		t.Stop()
	}
}

// membership keeps the configuration healthy. On the leader: promote non-voters while
// voters are missing, replace dead voters, remove dead non-voters. Elsewhere: a server
// that has had no leader for long, or is not in its own configuration, asks to join
// again through the servers it knows.
func (n *Node) membership(ctx context.Context) {
	period := min(time.Second, n.cfg.DeadServerTimeout/4)
	tick := time.NewTicker(period)
	defer tick.Stop()
	rejoin := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if ok, _ := n.Leadership(); ok {
			n.autopilot(ctx)
			continue
		}
		if n.needsJoin() {
			rejoin++
			n.rejoin(ctx, rejoin)
		}
	}
}

// autopilot makes at most one configuration change per round.
func (n *Node) autopilot(ctx context.Context) {
	servers, idx, err := n.configuration()
	if err != nil {
		return
	}
	n.notices.keep(servers)
	now := time.Now()
	stable := 2 * n.cfg.HeartbeatTimeout
	n.mu.Lock()
	dead := func(id hraft.ServerID) bool {
		since, ok := n.failing[string(id)]
		return ok && now.Sub(since) > n.cfg.DeadServerTimeout
	}
	var voters int
	var deadVoters, deadNonvoters, healthy []hraft.Server
	for _, s := range servers {
		if string(s.ID) == n.cfg.ID && string(s.Address) != n.addr && s.Suffrage == hraft.Voter {
			// This server restarted on another address (a port chosen by the kernel).
			n.mu.Unlock()
			if err := n.r.AddVoter(s.ID, hraft.ServerAddress(n.addr), idx, 0).Error(); err != nil {
				n.log.Warn("could not update this server's address", "err", err)
			}
			return
		}
		if _, ok := n.seen[string(s.ID)]; !ok {
			n.seen[string(s.ID)] = now
		}
		_, failing := n.failing[string(s.ID)]
		switch {
		case s.Suffrage == hraft.Voter:
			voters++
			if string(s.ID) != n.cfg.ID && dead(s.ID) {
				deadVoters = append(deadVoters, s)
			}
		case dead(s.ID):
			deadNonvoters = append(deadNonvoters, s)
		case !failing && now.Sub(n.seen[string(s.ID)]) >= stable:
			healthy = append(healthy, s)
		}
	}
	n.mu.Unlock()
	change := func(what string, s hraft.Server, f hraft.IndexFuture) {
		if err := f.Error(); err != nil {
			n.log.Warn("membership change failed", "change", what, "server", string(s.ID), "err", err)
			return
		}
		n.log.Info("membership changed", "change", what, "server", string(s.ID))
	}
	switch {
	case len(deadVoters) > 0 && len(healthy) > 0:
		// Promote first, so the number of voters never drops.
		change("promoted", healthy[0], n.r.AddVoter(healthy[0].ID, healthy[0].Address, idx, 0))
		if _, idx, err = n.configuration(); err == nil {
			change("removed dead voter", deadVoters[0], n.r.RemoveServer(deadVoters[0].ID, idx, 0))
		}
	case voters < n.cfg.Voters && len(healthy) > 0:
		change("promoted", healthy[0], n.r.AddVoter(healthy[0].ID, healthy[0].Address, idx, 0))
	case len(deadNonvoters) > 0:
		change("removed dead non-voter", deadNonvoters[0], n.r.RemoveServer(deadNonvoters[0].ID, idx, 0))
	}
}

// needsJoin reports whether this server seems left out: no leader for a few election
// timeouts, or missing from its own latest configuration.
func (n *Node) needsJoin() bool {
	n.syncLeader()
	servers, _, err := n.configuration()
	if err != nil {
		return false
	}
	member := slices.ContainsFunc(servers, func(s hraft.Server) bool { return string(s.ID) == n.cfg.ID })
	n.mu.Lock()
	since := n.noLeader
	n.mu.Unlock()
	if member && (since.IsZero() || time.Since(since) < 3*n.cfg.ElectionTimeout) {
		return false
	}
	return len(n.knownPeers(servers)) > 0
}

func (n *Node) knownPeers(servers []hraft.Server) []string {
	var peers []string
	for _, s := range servers {
		if string(s.ID) != n.cfg.ID {
			peers = append(peers, string(s.Address))
		}
	}
	for _, p := range n.cfg.Peers {
		if !slices.Contains(peers, p) && p != n.addr {
			peers = append(peers, p)
		}
	}
	return peers
}

// rejoin sends a join request to one known server (round robin); whoever receives it
// forwards it to its leader.
func (n *Node) rejoin(ctx context.Context, attempt int) {
	servers, _, err := n.configuration()
	if err != nil {
		return
	}
	peers := n.knownPeers(servers)
	if len(peers) == 0 {
		return
	}
	peer := peers[attempt%len(peers)]
	req, _ := json.Marshal(joinRequest{ID: n.cfg.ID, Address: n.addr})
	cctx, cancel := context.WithTimeout(ctx, 2*n.cfg.ElectionTimeout)
	defer cancel()
	if _, err := n.peers.call(cctx, peer, opJoinAny, req); err != nil {
		n.log.Debug("rejoin attempt failed", "peer", peer, "err", err)
		return
	}
	n.log.Info("asked to rejoin the cluster", "through", peer)
}
