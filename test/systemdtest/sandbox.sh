# The sandbox's PID 1, run by /bin/sh -c with fresh pid, mount, uts and ipc
# namespaces (cloned by the harness). It gives systemd its own copy of
# everything systemd would otherwise change on the host, then execs it.
# Stage "enter": make every mount private, move into the sandbox cgroup (one
# directory per hierarchy, given as arguments), unshare the cgroup namespace
# there. Stage "boot": fresh /proc, /run, /tmp and /sys/fs/cgroup, the host's
# hierarchies mounted again inside, the units directory, systemd.
set -eu
stage=$1
shift
case $stage in
enter)
	mount --make-rprivate /
	for d in "$@"; do
		echo 0 >"$d/cgroup.procs"
	done
	exec unshare --cgroup /bin/sh -c "$SYSTEMDTEST_SCRIPT" sh boot
	;;
boot)
	mount -t proc proc /proc
	mount -t tmpfs -o mode=755 tmpfs /run
	mount -t tmpfs -o mode=1777 tmpfs /tmp
	# Own superblock: systemd remounts /sys/fs/cgroup read-only.
	mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup
	for m in $SYSTEMDTEST_V1; do
		dir=${m%%=*}
		opts=${m#*=}
		mkdir "/sys/fs/cgroup/$dir"
		mount -t cgroup -o "$opts" cgroup "/sys/fs/cgroup/$dir"
	done
	for l in $SYSTEMDTEST_LINKS; do
		ln -s "${l#*=}" "/sys/fs/cgroup/${l%%=*}"
	done
	if [ -n "$SYSTEMDTEST_V2" ]; then
		mkdir "/sys/fs/cgroup/$SYSTEMDTEST_V2"
		mount -t cgroup2 cgroup2 "/sys/fs/cgroup/$SYSTEMDTEST_V2"
	fi
	mkdir -p /run/systemd /run/systemdtest/units
	printf '%s' "$SYSTEMDTEST_TARGET" >/run/systemdtest/units/sandbox.target
	unset SYSTEMDTEST_SCRIPT SYSTEMDTEST_V1 SYSTEMDTEST_LINKS SYSTEMDTEST_V2 SYSTEMDTEST_TARGET
	# Only the units directory above (first: tests install their units in
	# the first UnitPath entry), no systemd-tmpfiles, no other unit; and
	# the directories systemd itself writes to at runtime, so that a
	# re-executed (or reloaded) systemd reads them again: the transient
	# units' files (a scope's Slice=, Delegate= ...) and the drop-ins of
	# runtime SetUnitProperties.
	export container=other SYSTEMD_UNIT_PATH=/run/systemdtest/units:/run/systemd/system.control:/run/systemd/transient
	exec "$SYSTEMDTEST_SYSTEMD" --system --unit=sandbox.target --log-target=kmsg --log-level=notice
	;;
esac
echo "sandbox.sh: unknown stage $stage" >&2
exit 2
