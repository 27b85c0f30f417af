// Package ociruntime runs containers with an OCI-CLI-compatible runtime
// binary (runc, crun, or any binary with the same command line) instead of
// reconciled's native executor, and records them on disk in the native
// executor's state format, so that actual/, status, logs, stats and
// restart policies treat both alike.
//
// It must not import desired/, actual/ or reconciler/, and does no policy
// (restarts, backoff): like executor/, it does what it is told, once.
//
// # Choosing the runtime
//
// Runtimes holds a daemon's configured runtimes (runc and crun, looked up
// in PATH, and --runtime NAME=PATH ones) and makes the choice per
// container: ForSpec for a create (the spec's AnnotationRuntime; none, or
// Native, is the native executor), Of for every later operation (the
// runtime the container's state names, so a container is always stopped
// and deleted by the runtime that made it), WithoutBinary to delete a
// container whose runtime is gone.
//
// # Exit codes
//
// runc and crun record no exit status, and the container's init is not
// the caller's child once `create` returned. So Create starts a small
// per-container monitor: this binary re-exec'd (the package's init()
// recognizes the _RECONCILED_OCI_MONITOR variable, before main runs), in
// its own session, that makes itself a child subreaper
// (PR_SET_CHILD_SUBREAPER) and then runs `RUNTIME create --bundle B
// --pid-file P ID`. The runtime forks the container's init and exits;
// the init, orphaned, is reparented to the monitor, which reads its PID
// from the pid file, reports it to the creator, and waits for it with
// wait4 (reaping any other orphan meanwhile). When it exits the monitor
// writes exit.json (exit code, 128+signal for a signal, signal name,
// finish time, and an OOM kill: the cgroup's oom_kill counter above the
// count Create recorded) exactly as the native monitor does, and exits.
// The cgroup is still there then: the runtime removes it only at delete.
//
// The monitor also holds a lifeline pipe from the creator: EOF before the
// creator's "created" byte means the creator died half-way, and the
// monitor then runs `RUNTIME delete --force`, so no unrecorded container
// keeps running.
//
// # State
//
// Each container has a state directory under the state root (the native
// executor's root by default, so that executor.ReadState and executor.List
// read it): state.json in the native format, with the runtime's name in
// the dev.reconciled.runtime annotation (AnnotationRuntime), exit.json
// from the monitor, and an empty exec.fifo marker file from create until
// start (executor.ReadState takes its presence as "created"). The
// runtime's own state lives under a separate --root (RuntimeRoot), which
// must not be inside the state root.
//
// # Errors and limits
//
// A missing binary is ErrRuntimeNotFound, a failing one ErrRuntimeFailed
// with the runtime's own message (its --log, kept in the state directory):
// both are the container's error; nothing is left of a failed create.
// Delete works without the binary: it kills the init (PID and start time
// checked), the cgroup's processes, removes the cgroup and the runtime's
// state directory. A root.path of the host's / is refused with
// executor.ErrNotSupported: runc and crun pivot_root into the root, which
// fails (EBUSY) for the current root.
//
// # Cgroups
//
// The runtime makes the cgroup itself. When the spec leaves
// linux.cgroupsPath empty Create sets it to where the daemon's driver
// looks by default: cgroups.DefaultParent/ID with cgroupfs;
// "reconciled.slice:reconciled:ID" (the scope reconciled-ID.scope) with
// systemd, whose runtimes are run with --systemd-cgroup (the daemon sets
// it to a path under its own cgroup parent). The driver and the path are
// recorded in the state, so the daemon's cgroup manager finds the same
// cgroup for stats, ps, pause and kill-all. test/systemd_e2e runs runc
// with the systemd driver under a sandboxed systemd (the CI host's PID 1
// is not systemd).
//
// # Hybrid cgroup hosts
//
// runc works on the cgroup v1 "hybrid" layout (v1 controllers plus an
// empty cgroup2 at /sys/fs/cgroup/unified). crun 1.8 refuses it ("cgroups
// in hybrid mode not supported, drop all controllers from cgroupv2"), which
// is each crun container's error in status. On such a host use runc, boot
// with a pure v1 or pure v2 layout (systemd.unified_cgroup_hierarchy=0 or
// 1), or give the daemon a wrapper that hides the unified mount from crun
// (bench/nohybrid.c, an LD_PRELOAD shim that changes no mount):
//
//	#!/bin/sh
//	LD_PRELOAD=/usr/local/lib/nohybrid.so exec /usr/bin/crun "$@"
//
// installed as /usr/local/bin/crun-v1 and named with --runtime
// crun=/usr/local/bin/crun-v1. crun then uses the same v1 controllers as
// runc.
//
// # Spec
//
// config.json is the daemon's generated spec with ociVersion set to
// OCIVersion (crun 1.8 rejects versions it does not know; nothing newer
// is used) and, with cgroupfs, linux.cgroupsPath set as above.
package ociruntime
