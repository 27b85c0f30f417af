// Command convergebench measures the daemon (`reconciled run`) end to end:
//
//   - drop to running: from a manifest's rename into the directory to its
//     process running (the process's first write to its log file, seen with
//     inotify), one container at a time, p50 and p99, and the CPU per drop:
//     of all CPUs together (/proc/stat: every process, the workload and the
//     benchmark included) and the daemon's own (its process CPU clock).
//     Dropped back to back on a 2-core host both CPUs are mostly busy and
//     the p50 is close to half the first: what a change saves or costs in
//     CPU, the back-to-back p50 follows. The manifests are written to a
//     staging directory on the same filesystem before the first drop and
//     timed from there, so that no file the benchmark makes competes with
//     the daemon;
//   - converge: N manifests renamed into an empty directory at once, until
//     every process runs; and their removal, until the runtime root is empty;
//   - idle: the daemon's CPU use (of one core, in ns from its process CPU
//     clock, with its live threads' schedstat and the clock ticks beside
//     it), its wakeups (its threads' context switches) and RSS with N
//     running;
//   - drop to running with N running (-drops-loaded): the same, beside the
//     N converged containers, to show that a drop does not pay for them;
//   - adoption: the daemon stopped with SIGTERM and started again, until its
//     status shows all N running (each with the PID it had before);
//   - beside it, the same N containers created and started one after the
//     other with runc and with crun (their time, then removal, untimed).
//
// With -base (another reconciled binary, an earlier build) it measures
// only the drop to running: -pairs times with each binary, alternating
// (base first in odd pairs, ours first in even ones, so that a host that
// drifts over the run favours neither: on a 2-core VM the p50 of one
// binary went from 8.5 to 9.7 ms over 12 runs, with the work directory on
// a tmpfs, and from 9.0 to 12.5 ms over 20 on ext4), each on a daemon
// started afresh on the same state, then the medians of the runs' p50
// and p99 and in how many pairs ours had the lower p50,
// and the medians of the CPU per drop. On
// a host whose speed drifts from minute to minute (a shared VM), that is
// how two builds are compared.
//
// Every container runs `sh -c 'echo up; exec sleep'` in the same busybox
// root filesystem, read-only. The daemon runs with -cgroup-driver (default
// auto, as `reconciled run` does) and the first line says which driver it
// reports using. It is run by bench/converge.sh; with the systemd driver,
// on a machine whose PID 1 is not systemd, by BenchmarkConvergeSystemd in
// test/systemd_e2e (bench/converge.sh -systemd), inside a sandboxed
// systemd: there -work is under the sandbox's /tmp and -state-in is its
// /run, both private tmpfs that vanish with it (its /dev/shm is the
// host's).
package main
