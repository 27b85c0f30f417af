package testutil

import (
	"fmt"
	"strconv"
	"strings"
)

// StatSched reads the scheduling policy (0 SCHED_OTHER, 3 SCHED_BATCH, …),
// the nice value and the realtime priority from a /proc/PID/stat text
// (fields 41, 19 and 40): what a process in a container can report of
// itself (cat /proc/self/stat). A live process on the host is read with
// sched_getattr instead.
func StatSched(stat string) (policy, nice, rtprio int, err error) {
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, 0, 0, fmt.Errorf("no command name in %q", stat)
	}
	f := strings.Fields(stat[end+1:]) // f[0] is field 3
	if len(f) < 41-3+1 {
		return 0, 0, 0, fmt.Errorf("short stat: %q", stat)
	}
	vals := [3]int{}
	for i, field := range [3]int{41, 19, 40} {
		if vals[i], err = strconv.Atoi(f[field-3]); err != nil {
			return 0, 0, 0, fmt.Errorf("field %d of %q: %w", field, stat, err)
		}
	}
	return vals[0], vals[1], vals[2], nil
}
