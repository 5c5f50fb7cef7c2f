// Package locator is Cocaine's service discovery: the `locator` service (resolve,
// connect, refresh, cluster, publish, routing, uuid; protocol.md §6.1), the Registry of
// this host's services, and routing groups, whose consistent-hashing Ring reproduces the
// original's choices exactly (protocol.md §7.5).
//
// Every service of the daemon is exposed in the Registry with its endpoints, protocol
// version and graph; resolve answers from it with the encoding computed once at expose
// time. A publish channel exposes an external service for as long as the channel lives.
// A connect stream sends a snapshot of the announced services and then every change; a
// routing stream sends every ring at once and again after each refresh.
//
// Routing groups are read from the storage collection "groups" (keys carrying the tags
// "group" and "active", values msgpack maps {service: weight}), where cocaine-tool's group
// commands write them.
package locator
