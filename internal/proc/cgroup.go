package proc

import (
	"os"
	"strconv"
	"strings"
)

// Cgroups reads /proc/PID/cgroup (pid 0: this process): the cgroup of the
// process in each hierarchy, by the hierarchy's controllers as the kernel
// prints them ("cpu,cpuacct", "name=systemd"; "" for cgroup2).
func Cgroups(pid int) (map[string]string, error) {
	path := "/proc/self/cgroup"
	if pid != 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/cgroup"
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseCgroups(string(data)), nil
}

// ParseCgroups parses the content of /proc/PID/cgroup (see Cgroups):
// lines "ID:CONTROLLERS:PATH"; others are skipped.
func ParseCgroups(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		out[parts[1]] = parts[2]
	}
	return out
}
