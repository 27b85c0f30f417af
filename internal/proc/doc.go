// Package proc is the one home of what this module reads from procfs: the
// fields of /proc/PID/stat and, from them, a process's identity (its PID
// together with its start time, so that a reused PID is never mistaken for
// the process that had it) and liveness; the mount table
// (/proc/PID/mountinfo); and a process's cgroups (/proc/PID/cgroup). It is
// a leaf: it imports nothing of this module but internal/sys, and it does
// no policy: it reads, parses and says what it found.
package proc
