package locator

import (
	"math"
	"math/rand/v2"
	"slices"

	"github.com/cocaine/cocaine/rpc"
)

// Resolve answers resolve(name) without a routing group: [endpoints, version, graph].
// This host's endpoints come first (clients use the first they can reach, so local
// clients stay local); then the other hosts running the same protocol version and
// graph, in a random order weighted by the capacity each announced, so that the
// clients of a service running only elsewhere spread over its hosts. In proxy mode, a
// service running only elsewhere is answered with an endpoint of this host that
// forwards there. ErrServiceUnavailable if nobody runs it.
func (s *Service) Resolve(name string) (rpc.Raw, error) {
	local, lok := s.reg.Lookup(name)
	var remotes []*remote
	if s.index != nil {
		remotes = s.index.lookup(name)
	}
	if len(remotes) == 0 {
		if !lok {
			return nil, rpc.ErrServiceUnavailable // the original's exact [10, 1] and text
		}
		return local.resolved, nil
	}
	order := weightedOrder(remotes)
	var (
		version uint64
		graph   rpc.Raw
	)
	if lok {
		version, graph = local.Version, local.graphRaw
	} else {
		version, graph = order[0].version, order[0].graph
	}
	if !lok && s.proxies != nil {
		ep, err := s.proxies.endpoint(name)
		if err != nil {
			return nil, err
		}
		return appendResolved([]rpc.Endpoint{ep}, nil, version, graph), nil
	}
	same := order[:0:0]
	for _, r := range order {
		if r.version == version && string(r.graph) == string(graph) {
			same = append(same, r)
		}
	}
	var eps []rpc.Endpoint
	if lok {
		eps = local.Endpoints
	}
	return appendResolved(eps, same, version, graph), nil
}

// appendResolved encodes [endpoints, version, graph]: eps, then each remote's.
func appendResolved(eps []rpc.Endpoint, remotes []*remote, version uint64, graph rpc.Raw) rpc.Raw {
	n := len(eps)
	for _, r := range remotes {
		n += len(r.endpoints)
	}
	b := rpc.AppendArrayHeader(nil, 3)
	b = rpc.AppendArrayHeader(b, n)
	for _, e := range eps {
		b, _ = e.AppendMsgpack(b)
	}
	for _, r := range remotes {
		for _, e := range r.endpoints {
			b, _ = e.AppendMsgpack(b)
		}
	}
	if graph == nil {
		b = rpc.AppendUint(b, 0)
		return rpc.AppendMapHeader(b, 0)
	}
	b = rpc.AppendUint(b, version)
	return append(b, graph...)
}

// weightedOrder returns remotes in a random order where each is first with a
// probability proportional to its weight (Efraimidis–Spirakis: sort by -ln(u)/w).
func weightedOrder(rs []*remote) []*remote {
	type keyed struct {
		r   *remote
		key float64
	}
	ks := make([]keyed, len(rs))
	for i, r := range rs {
		u := 1 - rand.Float64() // in (0, 1]
		ks[i] = keyed{r, -math.Log(u) / float64(max(r.weight, 1))}
	}
	slices.SortFunc(ks, func(a, b keyed) int {
		switch {
		case a.key < b.key:
			return -1
		case a.key > b.key:
			return 1
		}
		return 0
	})
	out := make([]*remote, len(ks))
	for i, k := range ks {
		out[i] = k.r
	}
	return out
}
