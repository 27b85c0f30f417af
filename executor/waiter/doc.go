// Package waiter holds the program a created container's init becomes
// while it waits for start: a few hundred bytes of machine code
// (waiter_amd64.S, assembled by gen.sh into zcode_amd64.go) wrapped in a
// minimal ELF header and run from a sealed memfd.
//
// Why: between create and start the runtime spec wants the container's
// process to exist, set up, not yet running the user program. A Go init that
// waits holds about 1.5 MiB of private memory (the runtime's floor); the
// waiter holds a few KiB. The init does all the setup in Go (namespaces,
// mounts, pivot_root, credentials, capabilities, rlimits, no_new_privs,
// the cwd and entrypoint checks), then execs the waiter, which only opens
// the exec fifo (blocking until start) and execs the user program.
// Everything the init set survives both execs (capabilities are recomputed
// the same way at each exec; with no_new_privs they cannot grow).
//
// It must stay that small: no allocation, no libc, no other system call
// than openat, close, execve, write and exit_group.
//
// Only amd64 has a waiter so far; elsewhere Available is false and the Go
// init waits itself.
package waiter

//go:generate ./gen.sh
