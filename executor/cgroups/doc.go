// Package cgroups places a container's processes in a cgroup, sets its
// resource limits, freezes it and reads its usage back.
//
// It knows the three layouts a Linux host may have: cgroup v1 (one hierarchy
// per controller), hybrid (v1 controllers plus an empty cgroup2 mounted at
// /sys/fs/cgroup/unified) and unified v2. It never remounts /sys/fs/cgroup and
// never touches a cgroup it did not create.
//
// It must not import the rest of reconciled.
//
// # The cgroupfs driver
//
// NewCgroupfs reads the layout from /proc/self/mountinfo; NewCgroupfsAt
// takes it explicitly (tests use a fake cgroup2 tree). A container's cgroup
// is at linux.cgroupsPath, or at DefaultParent/<id> ("/reconciled/<id>")
// when that is empty, relative to the root of every hierarchy: on v1
// <mount>/reconciled/<id> in every mounted hierarchy (name=systemd
// included), on hybrid in the cgroup2 one too (as runc does; crun refuses
// hybrid hosts), on unified v2 under /sys/fs/cgroup. A relative
// cgroupsPath is taken from the root as well (not from the runtime's own
// cgroup); ".." and the root cgroup itself are refused. Paths are joined to
// each mount point as mounted: a hierarchy mounted from a sub-tree (inside
// a container without a cgroup namespace) is used as it is. The systemd
// "slice:prefix:name" form belongs to the systemd driver.
//
// Apply makes the directories, sets the limits, and only then writes the
// pid to cgroup.procs in every hierarchy, so limits hold from the first
// instruction. On v1 it first copies cpuset.cpus and cpuset.mems from the
// parent into each level where they are empty (an empty cpuset admits no
// process). On v2 it adds "+cpu +memory +pids" (and +cpuset when the spec
// pins CPUs or memory nodes, and the controller of each linux.resources.
// unified key) to cgroup.subtree_control at each level from the root down
// to the cgroup's parent where one of them is available but not enabled:
// the root is written only when it lacks one, and nothing is ever removed.
// pid 0 makes Apply create and set only. A failed Apply removes the
// directories it made before returning.
//
// # What is enforced
//
//	spec                   v1                            v2
//	memory.limit           memory.limit_in_bytes         memory.max
//	memory.swap (mem+swap) memory.memsw.limit_in_bytes   memory.swap.max = swap - limit ("max" for -1)
//	memory.reservation     memory.soft_limit_in_bytes    memory.low
//	memory.swappiness      memory.swappiness             ignored
//	memory.disableOOMKiller memory.oom_control           ignored
//	cpu.shares             cpu.shares                    cpu.weight = 1 + ((shares-2)*9999)/262142
//	cpu.quota, cpu.period  cpu.cfs_quota_us, _period_us  cpu.max "quota period" ("max" for no quota)
//	cpu.burst              cpu.cfs_burst_us              cpu.max.burst
//	cpu.cpus, cpu.mems     cpuset.cpus, cpuset.mems      cpuset.cpus, cpuset.mems
//	pids.limit             pids.max ("max" for <= 0)     pids.max
//	devices                devices.deny "a", then one    an eBPF device program
//	                       devices.allow/deny per rule   (see below)
//	unified                error                         each key written as a file, last
//
// Nil or zero fields leave the file as it is; so does an empty devices
// list (the v1 devices cgroup then allows what its parent allows, the v2
// program stays as it was).
//
// On v1, memory and memsw are written in the order the kernel accepts
// (memsw first when it grows or goes unlimited); a swap limit other than -1
// without swap accounting (no memsw file) is an error. On v2 a missing
// memory.swap.max is ignored for "max" and "0" only, as in runc.
//
// Device rules mean the same on every host and driver (compileDeviceRules,
// the v1 controller's own algorithm, as runc's emulator has it): replayed
// in order over "deny every device"; type "a" (whatever its numbers)
// resets to allow or deny all and drops the exceptions; a rule against
// the current default adds an exception (access merged with one for the
// same device), a rule with it takes access away from the exception for
// the same device. Under deny-all an access is allowed when one exception
// holds all of it; under allow-all it is denied when one exception holds
// any of it. A rule that would take access away from a device an earlier
// wildcard exception covers ("deny c 1:3" after "allow c 1:*") is refused:
// the v1 kernel would silently ignore it. Bad types ("p"), access letters
// and numbers above 2^31-1 are errors naming the rule's index.
//
// Devices on cgroup v2: the kernel has no devices files there; it runs
// the BPF_PROG_TYPE_CGROUP_DEVICE programs attached to a process's cgroup
// and its ancestors on every open and mknod of a device node (all must
// allow; on hybrid hosts before the v1 controller). setV2 compiles the
// rules into such a program (eBPF instructions emitted by this package: one
// block per exception, first match decides, then the default), loads it
// with bpf(2) and attaches it with BPF_F_ALLOW_MULTI, so a container's
// sub-cgroups cannot lift it; on Set it attaches the new program first
// and then detaches every one attached before (listed by BPF_PROG_QUERY),
// so exactly one is left and no access either rule set denies slips
// through in between. A process keeps the programs it loaded (up to 16,
// by their code) and attaches the same one to every cgroup with the same
// rules: in the daemon a create costs an attach (about 30 µs here), not a
// load (the verifier and the JIT, about 0.4-0.6 ms here, once per rule set;
// BenchmarkSetDevicesV2). Kernels before 5.11 charge the program to
// RLIMIT_MEMLOCK: on EPERM the load is retried with the limit raised and
// the limit put back. The cgroup's removal frees the program. On
// hybrid hosts the v1 devices controller enforces the rules and no
// program is attached to the cgroup2 directory. The systemd driver leaves
// device rules to systemd (DevicePolicy=strict and
// DeviceAllow, which systemd enforces with its own program on v2).
//
// hugepageLimits go to hugetlb.<size>.limit_in_bytes (v1) or
// hugetlb.<size>.max (v2); network to net_cls.classid and
// net_prio.ifpriomap (v1; refused on v2, which has neither controller). A
// limit whose controller is not mounted or enabled is an error, as with
// runc. rdma, blockIO's leafWeight and weightDevice are refused
// (Unsupported); kernel memory limits and cpu idle are not set.
//
// # Reading back, freezing, removing
//
// Stats: memory usage, limit (0 when unlimited) and peak
// (memory.max_usage_in_bytes; memory.peak on v2, Linux 5.19), swap usage,
// OOM kills (memory.oom_control "oom_kill", memory.events "oom_kill"), CPU
// (cpuacct.usage and usage_user/usage_sys, or cpuacct.stat ticks; cpu.stat
// usage_usec, user_usec, system_usec), pids.current and pids.max. A file
// whose controller is missing reads as zero. Procs reads cgroup.procs of
// the unified hierarchy on v2, else of the first of pids, memory, freezer,
// cpu, name=systemd.
//
// Freeze uses the v1 freezer (freezer.state FROZEN/THAWED) when it is
// mounted, else cgroup.freeze of the cgroup2 hierarchy, and polls
// freezer.state or cgroup.events "frozen" until the kernel reports the new
// state, for at most 10 s when ctx has no deadline. On v1 a frozen task
// does not die of SIGKILL until thawed: to kill a frozen container, signal
// it, then thaw it (Destroy thaws too).
//
// Destroy removes, in every hierarchy, the sub-cgroups the container made,
// deepest first, then its cgroup, retrying EBUSY (a process that just
// exited may still be accounted) until ctx ends, 2 s without a deadline. A
// missing cgroup is not an error. Parent directories are removed only when
// empty, and only those the same Manager made in Apply, plus DefaultParent
// (the driver's own directory, which whoever leaves it empty removes; an
// Apply that races with that starts over). A Manager made after a restart
// therefore leaves the intermediate directories of a custom cgroupsPath.
//
// # Spare cgroups
//
// PlaceSpare (SpareDriver) puts a process that has no container yet (a
// Runtime's spare init) in a cgroup of its own, PARENT/.spare-PID-START-N
// beside the containers' (a container ID cannot start with '.'), and
// Adopt makes it a container's: on v1 hierarchies it renames the
// directory (rename(2) of a cgroup within its parent), sets the limits
// there and moves no process. Writing a PID to cgroup.procs write-locks
// cgroup_threadgroup_rwsem, which after a quiet moment waits for an RCU
// grace period unless the hierarchy is mounted with favordynmods (8-30 ms
// on a 2-core host); a rename takes cgroup_mutex only. A cgroup2
// directory cannot be renamed (the kernel refuses it, EPERM): on a hybrid
// host, whose cgroup2 hierarchy has no controllers (only membership), the
// container's directory is made and every process of the spare's moved
// there in the background until it is empty and removed (a process forked
// meanwhile is moved by a later round; Destroy waits for it); on a pure v2
// host PlaceSpare places nothing. Adopt refuses (ErrNotAdoptable, nothing
// changed) a container cgroup in another parent or one that exists: the
// caller then moves the process with Apply and removes the spare (Remove).
// RemoveStaleSpares removes the spare cgroups of a maker that no longer
// runs (the PID and start time in the name), moving a container's process
// left in one's cgroup2 directory (a sweep cut short) to the container's.
//
// The write of a PID waits for that grace period holding cgroup_mutex:
// every other cgroup operation of the host (mkdir, rmdir, rename, the
// mount of a cgroup filesystem, a clone into a cgroup) waits with it, a
// create's in another process included. PrepareSpare (SelfPlacer) makes
// the spare cgroup empty instead, for a single-threaded process that joins
// it itself: cloned into its cgroup2 directory (OpenUnified), it writes 0
// to the tasks file of each v1 one (JoinFiles), which moves the writing
// thread only and takes neither the global lock nor the grace period; a
// Manager's JoinFiles serves a container's init the same way. The sweep
// of a hybrid host's cgroup2 directory, which must write PIDs, waits until
// no cgroup was adopted for 50 ms (creates in a row sweep together after
// the last), at most 30 s (a converge of 1,000 takes 4-6 s on a 2-core
// VM: sweeps begun in it would stall its tail), or until Destroy.
//
// Errors name the file and the value: writing "12345" to
// /sys/fs/cgroup/memory/reconciled/web/cgroup.procs: device or resource
// busy.
package cgroups
