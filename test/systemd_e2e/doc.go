// Package systemde2e runs the daemon as a systemd service, as a host would:
// installed with `reconciled install`, started by systemd (Type=notify),
// its containers in transient scopes of reconciled.slice through the
// systemd cgroup driver. The systemd is a real one, PID 1 of a sandbox
// (test/systemdtest), since the machines that run the tests do not boot
// with systemd; the daemon, its containers and a minimal journald run in
// that sandbox. Its tests check what an operator would check: systemctl
// show, the cgroup files, journalctl, reconciled status.
//
// It must not touch the host's systemd, /etc or /usr: everything it
// installs goes to the sandbox's private /run and /tmp.
package systemde2e
