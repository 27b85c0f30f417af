// Command reconciled keeps the containers on a host exactly as a directory of
// manifests says. One binary: the daemon (run), its clients (status, plan,
// logs, validate) and the low-level OCI runtime (runtime ...).
//
// Built with -tags reconciled_lean it is the lean build that
// packaging/build.sh appends to the shipped binary: the container stages,
// `runtime` and reconciled-runc only (the files of the other commands say
// //go:build !reconciled_lean), without the daemon, the image store and
// their dependencies, so that it starts in about half the time; the
// shipped binary's entry point runs it for those (executor/stage.go).
package main
