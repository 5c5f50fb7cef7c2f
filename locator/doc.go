// Package locator is Cocaine's service discovery: the `locator` service (resolve,
// connect, refresh, cluster, publish, routing, uuid; protocol.md §6.1), the Registry of
// this host's services, the cluster-wide view of every other host's, and routing
// groups, whose consistent-hashing Ring reproduces the original's choices exactly
// (protocol.md §7.5).
//
// Every service of the daemon is exposed in the Registry with its endpoints, protocol
// version and graph; resolve answers from it with the encoding computed once at expose
// time. A publish channel exposes an external service for as long as the channel lives.
// A connect stream sends a snapshot of the announced services and then every change; a
// routing stream sends every ring at once and again after each refresh.
//
// # The cluster
//
// With WithCluster, the locator announces this host's services (all but the restricted
// ones and itself) in a ClusterStore — unicorn, through the daemon — as ephemeral nodes
// bound to the host's lease:
//
//	<prefix>/hosts/<uuid>              {"locator": [[ip, port]...]}
//	<prefix>/services/<name>/<uuid>    {"endpoints", "version", "graph" (bytes), "weight"}
//
// and keeps them current as services come and go; after a lost lease (the host was cut
// off) it announces everything again under the new one. It follows the prefix with a
// watch and keeps the other hosts' announces in memory, so resolve answers from this
// host's own replica: this host's endpoints first, then those of every other host
// running the same protocol version and graph, in a random order weighted by the
// capacity each announced (for apps: pool-limit × concurrency), so clients that take the
// first endpoint they can reach prefer the local host and spread over the others. A
// host that dies leaves every answer when its lease expires. Loopback endpoints are
// announced only when the cluster lives on one machine (Config.AnnounceLoopback),
// unspecified ones never. cluster() lists the other hosts' locators.
//
// In proxy mode (Config.Proxy) a service that runs only on other hosts resolves to an
// endpoint of this host that forwards each connection, byte for byte, to one of them.
//
// Routing groups are read from the storage collection "groups" (keys carrying the tags
// "group" and "active", values msgpack maps {service: weight}), where cocaine-tool's group
// commands write them; they are reloaded every Config.GroupRefresh, so a group written
// through any host reaches every host's routing streams without a refresh.
package locator
