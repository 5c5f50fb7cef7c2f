// Package netshape is the network side of the runc isolate: a bridge with an address
// range, one veth pair and network namespace per container, and network classes after
// Odnoklassniki's one-cloud, with HTB through florianl/go-tc.
//
//	container netns: eth0 10.213.0.N/16, default via 10.213.0.1
//	      | veth; host end cv<tag><slot> --ingress: u32 match-all + mirred--> IFB cifb<tag>: HTB  (containers' egress)
//	bridge (10.213.0.1) --egress: HTB                                                            (containers' ingress)
//
//	HTB on both:  1:1 the link (link_rate)
//	                +-- 1:<slot> one per prod container: its guaranteed rate, its ceiling
//	                +-- 1:ffff   batch and idle containers together (and anything unclassified):
//	                             batch_rate, ceiling link − 1.1 × measured prod rate, every second
//
// Packets are classified by u32 on the container's address: its source address on the
// IFB, its destination address on the bridge, one filter priority per container. What
// a container sends is shaped whatever its destination; what one container sends
// another is switched by the bridge and shaped once, as the sender's egress. The
// redirect sits on each veth, not on the bridge: packets the IFB hands back to the
// bridge's own ingress escape NAT.
//
// A Shaper is built by New (validation only), Setup (which first deletes, by name,
// what a killed daemon with the same tag left: its veths, IFB, bridge, namespaces and
// NAT rules), Run (the ceiling loop) and Close. Setup refuses a kernel without veth,
// bridge, IFB, HTB, the ingress qdisc, u32 or mirred with ErrMissingFeature naming it.
package netshape
