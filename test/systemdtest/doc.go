// Package systemdtest runs a real systemd as PID 1 of fresh namespaces, so
// that tests can talk to it over its private socket on a machine whose own
// PID 1 is not systemd (the development and CI machines: cgroup v1 hybrid,
// systemd installed but not running).
//
// A test uses it like this:
//
//	func TestScope(t *testing.T) {
//		if systemdtest.Reexec(t) {
//			return // the body ran in a sandbox, in a child process
//		}
//		sb := systemdtest.Current(t) // from here on: inside the sandbox
//		out, err := sb.Exec(ctx, "systemctl", "show", "-p", "Slice", "x.scope")
//		...
//	}
//
// Reexec starts a sandbox (Start), re-runs the current test binary inside
// it with -test.run naming the test (Run), reports its output and result,
// and returns true; in the re-run it returns false at once. A process that
// talks to the sandboxed systemd has to be in its PID namespace (the PIDs it
// passes must mean the same thing to systemd) and in its cgroup subtree
// (systemd cannot adopt a process from outside its cgroup root): the re-run
// is both, and so is every command Exec runs.
//
// # Containment
//
// A systemd started carelessly in namespaces changes the host, because some
// of what it touches is shared across mount namespaces. Start therefore:
//
//   - makes a cgroup named after the test below the test process's own
//     cgroup, in every hierarchy (cpuset.cpus and cpuset.mems copied from
//     the parent), and runs systemd in a cgroup namespace rooted there, so
//     that the init.scope, system.slice and reconciled.slice it creates are
//     inside that cgroup;
//   - gives systemd fresh pid, mount, uts and ipc namespaces, every mount
//     private, its own /proc, a tmpfs on /run and on /tmp (systemd-tmpfiles
//     would empty the machine's /tmp) and a tmpfs on /sys/fs/cgroup with the
//     host's hierarchies mounted again on it (systemd remounts
//     /sys/fs/cgroup read-only: on the host's tmpfs that remount would make
//     the host's /sys/fs/cgroup read-only);
//   - points SYSTEMD_UNIT_PATH at a directory holding one empty target,
//     sandbox.target (the first entry, where a test installs its own
//     units), so that no other unit exists, and at the two directories
//     systemd writes itself, /run/systemd/system.control (drop-ins of
//     runtime SetUnitProperties) and /run/systemd/transient (transient
//     units): without them a re-executed or reloaded systemd no longer
//     reads a scope's transient file and reports Slice=system.slice for
//     it, although its cgroup stays under its real slice.
//
// Cleanup (t.Cleanup) thaws any frozen v1 cgroup in the sandbox, SIGKILLs
// systemd (as PID 1 it ignores SIGTERM; its death kills its namespace) and
// then every PID still listed in the sandbox's cgroups, removes those
// cgroups deepest first in every hierarchy, and checks that a marker file
// made in the host's /tmp before the start is still there, that the host's
// /sys/fs/cgroup is not read-only and has no new entries. It remounts
// nothing: a failed check fails the test loudly, for a person to look at.
//
// Cgroup v2-only hosts are not supported (there the fresh cgroup2 mount
// would share its superblock with the host's /sys/fs/cgroup); such hosts
// usually run systemd as PID 1, which a test can use directly.
//
// It must not be imported by non-test code, and it never kills a process
// it cannot trace to its own sandbox.
package systemdtest
