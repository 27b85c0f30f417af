// Package executor is reconciled's OCI runtime: it creates, starts,
// signals and deletes containers from runtime-spec bundles, and records
// their state on disk so that any process (the daemon, the `reconciled
// runtime` CLI, actual/) can read it. The CLI is a thin layer over Runtime.
//
// It must not import desired/, actual/ or reconciler/; it takes specs and
// IDs. It does no policy (restarts, backoff): it does what it is told, once.
//
// # Processes
//
// create starts a monitor (this binary re-exec'd with _RECONCILED_STAGE=
// monitor, in its own session) and returns once the container is set up;
// the monitor clones the container's init (_RECONCILED_STAGE=init) with
// the spec's new namespaces, waits for it with wait4 and, when it exits,
// records its exit (exit code or signal, OOM kill, finish time) and exits.
// That is why a container outlives the process that created it and its exit
// status is still recorded: the monitor is its parent, not the caller.
// The monitor is the reaper (executor/waiter, reaper_amd64.S: a few
// hundred bytes of machine code from a sealed memfd, one thread, about 20
// KiB held) from its start (machineMonitor): started with
// waiter.MonitorEnv, the init's clone flags, in its environment and this
// binary on fd 5, it clones the init (clone3, CLONE_INTO_CGROUP when the
// creator sent a cgroup2 directory), reports its PID, follows the
// lifeline and then does the wait4 and writes "exit": the raw wait status,
// the time and the memory cgroup's OOM counter file (its path comes on the
// lifeline with "created"), which ReadState turns into the same fields. No
// Go runtime starts for it: on a 2-core host that was a quarter of the CPU
// a converge spent per container. The init's user namespace maps and
// namespaces joined by path need the Go monitor (runMonitor), which
// becomes the reaper once the container is created: it puts the state
// directory on fd 3 and the counter file on fd 4 for it, and keeps those
// numbers taken (/dev/null) from the moment it closes the sync socket and
// the lifeline, so that the Go runtime's poller descriptors never land
// there. Where there is no reaper (other architectures, a cgroup driver
// that gives no memory directory, a failed exec) the Go monitor waits and
// writes exit.json itself. A Runtime with spares has its machine
// monitors (a spare's, or one whose init is the runner init, below)
// forked by the spawner (spawner.go; the reaper started with
// waiter.MonitorEnv=s, a process of a few pages, "reconciled-spawner" in
// ps), which it starts on the first spare: the creator sends it the
// monitor's flags and descriptors (SCM_RIGHTS), and it forks with
// CLONE_PARENT, so the monitor is the creator's child as if the creator
// had started it. A fork of a process of a few pages costs less than a
// fork and exec from the creator, whose exec also closes every
// close-on-exec descriptor it holds, a pidfd or two per running
// container (BenchmarkLaunchSpare: 0.6 ms of CPU less per spare with
// 2,500 descriptors held). EOF on its socket ends it; one that fails is
// replaced, and the monitor meanwhile started as before. The monitor and
// the waiting init run with
// GOMAXPROCS=1 and do not collect before they block (their setup
// allocates little, and a collection in a cold process costs more than
// the memory it would save). The monitor runs on the main thread, so that
// its exec does not move the thread group's leader (a pidfd waiting for
// the monitor would see that as an exit).
//
// Where the spec allows (runner.go: no console, extra files, user
// namespace, joined namespace or hooks that run in the container), the
// init is the setup runner (executor/waiter, setup_amd64.S), not this
// binary: the creator sets the container up from a thread in the init's
// namespaces and the init runs the system calls only it can make, sent as
// chunks (waiter.Program). What follows describes the Go init, which the
// other containers get; the runner init keeps its order, its messages and
// the exec fifo.
//
// The init sets up everything (hostname, sysctls, lo up, rootfs via
// internal/rootfs, cwd, rlimits, user, capabilities, no_new_privs), sends
// "ready" to the creator, then blocks opening the exec fifo in the state
// directory for writing (relative to an O_PATH fd of the directory taken
// before pivot_root, closed right after: no /proc needed). start opens it for reading, which releases the
// init: it runs the startContainer hooks and execs the user process. Start
// reads the fifo until EOF: nothing means the exec happened (the fd is
// close-on-exec), a message is the reason it did not.
//
// Creator, monitor and init talk over one socketpair (see protocol.go).
// The monitor and the init start with /dev/null as fds 0-2 and know
// nothing of the container: the monitor learns its state directory from
// the lifeline once the container is created, the init gets the container's stdio (SCM_RIGHTS)
// and its configuration from the creator. So a pair can be started before
// its container exists: a Runtime made WithSpares keeps some ready per
// set of namespaces it has seen (the daemon two), and Create takes one
// instead of starting two processes of this binary (several ms, most of a
// cold create); a spare whose init or monitor died is passed over, and
// namespaces joined by path never use one. The spares a create took are
// made again 5 ms after a container has started (or 100 ms after the
// create), not during the create nor the first steps of the container's
// process, whose CPU they would share. A create that finds none ready
// while one of its kind is being made takes that one once it is (up to
// 250 ms; awaitSpare) rather than starting a pair of its own beside it.
// Close, or the creator's exit, ends the spares (EOF on their lifelines).
//
// CreateAndStart, for a caller that starts each container as soon as it
// is created (the daemon), is Create then Start without the round trip
// between them: with a runner init the container is recorded created, its
// monitor told and the exec fifo opened while the init runs its last
// chunk, so the init goes on to its exec without waiting; the start then
// waits for that exec from what the create knows, without reading the
// state back. The monitor knows the container before the init can exit,
// as after Create; a last chunk that fails is the create's error, and the
// teardown waits for the monitor before it removes the state directory.
//
// With the cgroupfs driver on a v1 or hybrid host a spare's init waits in
// a cgroup of its own beside the containers' (cgroups.SparePrefix), and a
// create renames that cgroup to the container's instead of moving the
// init (cgroups.Spare): no cgroup.procs write, and so no wait for an RCU
// grace period (below), is left on the create's path. A cgroup2
// directory cannot be renamed: on a hybrid host the container's is made
// and the processes moved into it in the background once creates pause
// (that hierarchy has no controllers there); on a pure v2 host the init is
// moved as before. A runner spare gets into its cgroup without a PID
// written, which would hold cgroup_mutex through the grace period and stall
// the cgroup work of the create running beside: it is cloned into its
// cgroup2 directory and joins its v1 cgroups itself, writing 0 to their
// tasks files (cgroups.SelfPlacer).
//
// A create that starts its own pair (no spare: the CLI, a daemon's first
// container of a kind) has the monitor clone the init straight into its
// cgroup2 directory, as crun does (clone3 CLONE_INTO_CGROUP, Linux 5.7;
// cgroups.CloneTarget): the creator makes the cgroup first and sends the
// monitor its configuration with an fd of that directory (SCM_RIGHTS). On
// a pure v2 host the init is then moved nowhere; on a hybrid one a runner
// init joins its v1 cgroups itself once they are made (placedChunk: the
// creator opens their tasks files and sends them, the init writes 0 to
// each), a Go init is moved into them. A kernel without it gets the move,
// as before.
//
// Before anything of the cgroup is made, create checks it
// (CheckCgroupFree): a cgroup that exists and is frozen ("unexpectedly
// frozen", as runc says) or holds processes (named with their PIDs) is
// refused with ErrCgroupInUse and left as it is, never joined: an init
// moved into a frozen cgroup would freeze and the create hang. Where no
// linux.cgroupsPath is given, the cgroup goes where WithCgroupsPath says
// (a daemon's own parent), else to the driver's default.
//
// Right after taking or starting the pair the creator writes a first
// state.json (status creating, the monitor's PID and start time, cgroup
// driver and path) and, with the cgroupfs driver, makes the cgroup and sets
// its limits in the background while a started pair comes up. The monitor
// reports the init's PID; the creator sends the init its stdio and its
// configuration at once, records the init's PID in the state, moves the
// init into its cgroup (the only cgroup step that needs the PID; a spare's
// init is in it already where its cgroup was renamed), sets
// oom_score_adj and sends "placed". Without prestart and createRuntime
// hooks it sends "go" before all that, and the init sets up (network,
// hostname, mounts) while it is being placed: the first move into a cgroup
// after a quiet moment waits for an RCU grace period (5-20 ms measured on
// this project's VMs), which this overlaps. (The kernel's cgroup
// threadgroup rwsem is write-locked for every move and, unless the host
// mounts cgroup2 or a cgroup1 hierarchy with favordynmods, leaves its
// fast mode only after a grace period: 7.8 ms median for a move after
// 100 ms of quiet here, 0.26 ms with favordynmods; see the README. The
// runtime never changes mount options itself.) The init waits for "placed"
// before it unshares its cgroup namespace, runs createContainer hooks or
// mounts a cgroup filesystem (rootfs.SetupWith), and at the latest once
// its mounts are done. With those hooks, "go" and "placed" are one message
// sent after them, as before. The init answers ready or an error, which
// create returns (the init's error first) after removing everything.
//
// The monitor also holds the read end of a pipe (the lifeline) whose
// write end only the creator has. Once the container is recorded created
// the creator writes, in one write, the state directory and a newline
// (the monitor then writes the container's ID into the room left in its
// argv, so ps shows "reconciled-monitor ID") and one byte; EOF before
// that byte means the creator died (or gave up), and the monitor then
// kills the init. So a create killed half-way leaves no running process,
// and the first state.json (written before the cgroup is made) lets delete
// --force find the cgroup and remove everything.
//
// Start also finishes a start cut short after the exec: when the init
// already runs another binary than its monitor (it can only exec after the
// fifo was opened), the container is recorded running without waiting on
// the fifo. Started is taken before the fifo is opened, so it is never
// later than the Finished the monitor records. Delete kills what is left
// in the cgroup through KillCgroup, which thaws a frozen cgroup after
// SIGKILL, since a frozen task does not die before. The cgroup is the
// ground truth for what runs: Delete with force of a container whose
// state cannot be parsed (ErrBadState: truncated, forged) stops
// (StopCgroup) what runs in the cgroup where the container's would be
// (WithCgroupsPath, else the driver's default) and removes the state;
// the init's death ends its monitor.
//
// # Namespaces
//
// New namespaces are clone flags of the init, except the cgroup namespace,
// which the init unshares once it is in its cgroup so that the namespace
// is rooted there. Namespaces given by path are joined by the monitor on a
// dedicated, locked OS thread just before it forks the init (the thread is
// thrown away after): the child inherits them, which is also what makes a
// joined PID namespace work (setns(CLONE_NEWPID) only affects children). A
// joined mount namespace is entered by the init itself, first thing, on
// its main thread (locked in an init func), after unshare(CLONE_FS); the
// root filesystem and the mounts are then set up there as in a new one,
// pivot_root included, as runc does (joining the runtime's own mount
// namespace is refused: the host's root would be replaced). A new user namespace
// is a clone flag too, with its maps written by the monitor before the
// init execs; the rootfs and the bind mounts are then made by the creator
// from a thread that joins the init's mount namespace, and handed over as
// descriptors (userns.go). Joining a user namespace by path and time
// namespaces are not supported and refused.
//
// A Runtime with spares (the daemon) makes a runner init's new mount
// namespace from a template (template.go, rootfs.MakeTemplate): one mount
// namespace, made once, whose only mount is an empty read-only tmpfs. The
// monitor clones the init without CLONE_NEWNS; the init joins the
// template and unshares a copy of it (enterTemplate), a spare's ahead of
// time. The creator clones the rootfs and every bind source from the
// host's mount namespace as detached trees (rootfs.PrepareDetached), the
// init chroots into the rootfs tree in its first chunk (before any
// seccomp filter), and the setup thread joins the init's namespace,
// attaches the tree over its root and chroots too. No copy of the host's
// mount table is made and unmounted per container, and no pivot_root
// runs: it walks every thread on the host, and detaching the old root
// waits for an expedited RCU grace period (0.7 ms of a create on a 2-core
// VM). Under the container's root lies the empty tmpfs, as the detached
// old root would be: nothing of the host. Specs the template cannot serve
// (a linux.rootfsPropagation, the host's "/" as the root, cgroup or
// idmapped mounts: rootfs.FromTemplate) and a CLI's creates keep
// pivot_root.
//
// # Protection of the host binary (CVE-2019-5736)
//
// Runtime makes a read-only bind mount of /proc/self/exe on a temporary
// file, opens it, detaches the mount and removes the file, once per
// Runtime; Go monitors are exec'd through /proc/self/fd/N of that handle
// and inits through the monitor's /proc/self/exe, or, by the machine
// monitor, through the same handle, its fd 5. So /proc/PID/exe of every
// runtime process a container could see is a file on a read-only mount:
// opening it for writing fails with EROFS even once no process executes
// it any more. The init also refuses a user process that resolves to the
// runtime's own binary (same device and inode as /proc/self/exe).
//
// # File descriptors (CVE-2024-21626)
//
// Everything is opened close-on-exec and the init marks every fd above 2
// close-on-exec (close_range) right before the final exec, then clears it
// on the extra files the caller passed (CreateOptions.ExtraFiles, runc's
// --preserve-fds) on 3, 4, ... process.cwd is
// opened with RESOLVE_NO_MAGICLINKS inside the root and checked with
// getcwd, so it cannot point outside the container's root.
//
// # State on disk
//
// <root>/<id>/state.json (State, written by create and start: temp file
// and rename, not fsynced, as runc's and crun's are not: see
// writeFileAtomic), exit (written once by the reaper; exit.json by a Go
// monitor, and by versions before the reaper) and exec.fifo (from create
// until start). ReadState combines
// them with the live system: the init's PID counts only with the start
// time recorded beside it (field 22 of /proc/PID/stat), so a recycled PID
// reads as stopped and is never signalled (signals go through pidfds
// opened and then checked against the start time).
//
// # Running a command in a live container (exec.go)
//
// Exec cannot simply setns(2) the calling process: a Go process is
// multi-threaded, setns(CLONE_NEWNS) is refused to a thread that shares
// its fs_struct, and setns(CLONE_NEWPID) only changes the namespace of
// later children. So the caller opens the init's /proc/PID/ns/* (those
// that differ from its own; checked against the init's start time after
// opening), enters all but the mount namespace on a throw-away locked OS
// thread (startIn, as the monitor does for joined namespaces) and forks
// this binary from it with _RECONCILED_STAGE=exec: the child is born in
// the container's PID, network, IPC, UTS and cgroup namespaces, and its
// exec of /proc/self/fd/N (the read-only copy) still resolves in the
// host's mount namespace. In a container with a user namespace of its
// own, the child first runs the joiner (waiter/userns_amd64.S, from a
// sealed memfd): it joins the user namespace, becomes its root
// (setresgid/setresuid 0) and execs the exec stage, which then holds the
// container's capabilities there; a Go process, multi-threaded from its
// start, could not join it. The throw-away threads (sys.OnOwnThread) are
// never the process's main thread: the Go runtime keeps that one when its
// goroutine ends, and /proc/self shows its namespaces, which the exec
// compares the container's with. The caller, outside the container's cgroup
// namespace, writes the child into cgroup.procs of every hierarchy of the
// container before it runs anything. The exec stage (main thread locked in
// an init func) gets the container's mount namespace as fd 4,
// unshare(CLONE_FS)s and setns(CLONE_NEWNS)s, then does what the init
// does: cwd (refusing one outside the root), rlimits, no_new_privs, user
// and capabilities, and execs the command. Errors come back over the sync
// socket; EOF (close-on-exec) means the exec happened. The exec'd process
// is the caller's child: Wait reaps it and returns its exit status.
//
// With a terminal the exec stage opens /dev/pts/ptmx in the container's
// mount namespace (its devpts instance), unlocks it, takes the slave with
// TIOCGPTPEER (no path lookup in the container) and sends the master to
// the caller with SCM_RIGHTS; the slave becomes its controlling terminal
// (setsid, TIOCSCTTY) and fds 0-2. The CLI puts its own terminal in raw
// mode, copies both ways and copies the window size on SIGWINCH.
// Create with CreateOptions.Console does the same in the init, once the
// root is set up: the master goes back on a socket of its own (sent with
// stdio, since the sync socket is read through a buffer), before "ready".
//
// Each exec'd process is recorded in <root>/<id>/execs/<pid>.json (PID
// and start time) until it is reaped, so that Ps tells it from the
// container's own processes. Exec refuses a container that is not running
// or is paused (its process would be frozen on arrival).
//
// # Pause, processes, stats, events
//
// Pause and Resume go through the cgroup Manager's Freeze; IsPaused reads
// the freezer state of the kernel (there is no other record), and
// ReadState keeps saying running: PausedStatus is the status to show.
// KillAll freezes, signals every PID of the cgroup and thaws (a paused
// container stays paused unless the signal is SIGKILL): KillCgroup, the
// one kill-all (the daemon's and Delete's too); StopCgroup repeats it
// with SIGKILL until the cgroup is empty, then removes it. With SIGKILL,
// KillContainer first kills the init: where it is PID 1 of a namespace of
// its own, the kernel kills the rest of the namespace before the init's
// exit completes, and KillCgroup then finds the cgroup empty and freezes
// nothing (a freeze and a thaw on cgroup v1 each patch the kernel's text,
// 1.1 ms apiece on a 2-core VM). Ps lists the
// cgroup's PIDs with /proc/PID/status (NSpid for the PID inside). Events
// watches the init's pidfd and the cgroup's OOM notifications (v1
// cgroup.event_control eventfd on memory.oom_control, v2 inotify on
// memory.events).
package executor
