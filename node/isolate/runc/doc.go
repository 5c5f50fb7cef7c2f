// Package runc is the node's container isolate: each worker runs in a container of its
// own, started through libcontainer (runc v1.5.2) as a library, with the cocaine binary
// re-executed as the container's init (see Init).
//
// A container's rootfs is an overlay: the app's unpacked archive on top of a named,
// read-only base layer ("empty", a directory of node.runc.bases_dir such as a busybox
// tree, or a read-only view of host directories from node.runc.host_bases), remounted
// read-only; /tmp is a tmpfs of scratch_size bytes, the only writable place. The
// worker's unix socket is bind-mounted at the path it is given. The worker has its own
// mount, PID, IPC, UTS and network namespaces, no capabilities, no new privileges, and
// a cgroup <cgroup_root>/<class>/c<tag>-<uuid> with the CPU class of the process
// isolate (prod: CFS quota; batch: shares and SCHED_BATCH; idle: cpu.idle and
// SCHED_IDLE) and its memory and pids limits. Its stdout and stderr are captured as the
// process isolate captures them; an exit status, a signal or an OOM kill is reported.
//
// With node.runc.network, each container also gets a veth on the host's bridge with an
// address from the range, and a network class (package netshape): prod containers a
// class of their own with net_rate guaranteed and net_ceil at most, batch and idle
// containers one shared class whose ceiling follows the prod traffic.
//
// Profile isolate args (all optional):
//
//	{"base": "busybox", "class": "prod"|"batch"|"idle", "cores": 1.5,
//	 "memory_limit": 268435456, "pids_limit": 64, "scratch_size": 16777216,
//	 "network": "bridge"|"none", "net_rate": "20mbit", "net_ceil": "100mbit"}
//
// A Host (New, Run) is shared by every profile's isolate. Run first checks the kernel
// (root, namespaces, overlayfs, the cgroup controllers and cpu.idle, and for the
// network veth, bridge, IFB, HTB, ingress, u32 and mirred): a host without one of them
// refuses every runc profile with a message naming what is missing. It then removes,
// by name, what a killed daemon with the same state directory left: containers, rootfs
// mounts, cgroups, veths, the IFB, the bridge, namespaces and NAT rules.
package runc
