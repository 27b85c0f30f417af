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
// than openat, close, execve, write and exit_group (and fcntl and execveat
// to exec the init).
//
// The reaper (reaper_amd64.S) is its counterpart for the monitor: once a
// container is created, its monitor execs the reaper, which waits for the
// init (wait4), takes the time, reads the memory cgroup's OOM counter file
// and writes them to "exit" in the state directory (ParseExit reads it):
// one thread and about 20 KiB for the container's whole life instead of a
// Go runtime. Its system calls: wait4, clock_gettime, pread64, openat,
// write, close, renameat, exit_group. Started with MonitorEnv it is
// the whole monitor: it also clones the init (clone3, clone), execs it in
// the child (execveat), reports it (sendto) and follows the lifeline
// (pidfd_open, poll, read, kill), with recvmsg, pipe2, fcntl and dup3.
// Started with MonitorEnv=s it is the spawner of a runtime with spares
// (executor/spawner.go): it forks monitors on request (recvmsg, clone with
// CLONE_PARENT, sendto, close_range; in the child dup3, close_range and
// setsid), and each child goes on as the monitor above.
//
// The init (init_amd64.S) is the PID 1 of a container whose manifest says
// init: true, as docker's --init (tini) is: it forks the user program,
// forwards it every signal, reaps orphans and exits as the program did
// (128+N when signal N killed it). The waiter execs it from a memfd instead
// of the user program; in the container it exists only as a sealed memfd.
// Its system calls: rt_sigprocmask, prctl, fork, rt_sigtimedwait, kill,
// wait4, execve, write, exit_group.
//
// The setup runner (setup_amd64.S, program.go) is a container's init
// from its clone where the creator sets the container up itself
// (executor/runner.go): it runs chunks of system calls the creator sends
// on fd 3 and reports a failed one as "what: errno NNN". Its system calls
// are the chunks'; its own: recvmsg, read, mmap, munmap, write and
// exit_group.
//
// Only amd64 has a waiter, a reaper, an init and a setup runner so far; elsewhere
// Available and ReaperAvailable are false and the Go init and monitor wait
// themselves, and InitAvailable is false: init: true is refused there.
package waiter

//go:generate ./gen.sh
