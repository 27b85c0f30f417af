// Package cgroups places a container's processes in a cgroup, sets its
// resource limits, freezes it and reads its usage back.
//
// It knows the three layouts a Linux host may have: cgroup v1 (one hierarchy
// per controller), hybrid (v1 controllers plus an empty cgroup2 mounted at
// /sys/fs/cgroup/unified) and unified v2. It never remounts /sys/fs/cgroup and
// never touches a cgroup it did not create.
//
// It must not import the rest of reconciled.
package cgroups
