package executor

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// capNames maps the spec's capability names to numbers (linux/capability.h).
var capNames = map[string]uint{
	"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
	"CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
	"CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
	"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
	"CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
	"CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
	"CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
	"CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
	"CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
	"CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
	"CAP_CHECKPOINT_RESTORE": 40,
}

// lastCap is the highest capability the kernel knows, read once per
// process (it is the running kernel's: a daemon's creates do not read it
// again).
var lastCap = sync.OnceValues(func() (uint, error) {
	data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 32)
	return uint(n), err
})

// capMask turns names into a bit mask, ignoring capabilities newer than the
// kernel (last) and refusing names it does not know.
func capMask(names []string, last uint) (uint64, error) {
	var m uint64
	for _, n := range names {
		c, ok := capNames[strings.ToUpper(n)]
		if !ok {
			return 0, fmt.Errorf("unknown capability %q", n)
		}
		if c <= last {
			m |= 1 << c
		}
	}
	return m, nil
}

// capSets is the spec's five sets as masks.
type capSets struct {
	bounding, effective, permitted, inheritable, ambient uint64
}

func parseCaps(c *specs.LinuxCapabilities, last uint) (capSets, error) {
	var s capSets
	if c == nil {
		return s, nil
	}
	var err error
	for _, x := range []struct {
		dst   *uint64
		names []string
	}{
		{&s.bounding, c.Bounding}, {&s.effective, c.Effective}, {&s.permitted, c.Permitted},
		{&s.inheritable, c.Inheritable}, {&s.ambient, c.Ambient},
	} {
		if *x.dst, err = capMask(x.names, last); err != nil {
			return s, err
		}
	}
	return s, nil
}

// dropBounding drops every capability not in keep from the bounding set.
func dropBounding(keep uint64, last uint) error {
	for c := uint(0); c <= last; c++ {
		if keep&(1<<c) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, os.NewSyscallError("prctl", err))
		}
	}
	return nil
}

// setCaps sets the calling thread's effective, permitted and inheritable
// sets, then the ambient set.
func setCaps(s capSets, last uint) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	data[0].Effective, data[1].Effective = uint32(s.effective), uint32(s.effective>>32)
	data[0].Permitted, data[1].Permitted = uint32(s.permitted), uint32(s.permitted>>32)
	data[0].Inheritable, data[1].Inheritable = uint32(s.inheritable), uint32(s.inheritable>>32)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return os.NewSyscallError("capset", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", err)
	}
	for c := uint(0); c <= last; c++ {
		if s.ambient&(1<<c) == 0 {
			continue
		}
		if s.inheritable&(1<<c) == 0 || s.permitted&(1<<c) == 0 {
			// The kernel raises an ambient capability only where it
			// is permitted and inheritable; runc's own default spec
			// lists ambient ones that are not inheritable, and runc
			// skips them quietly (a debug message): so do we, without
			// writing to the container's stderr.
			continue
		}
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
			// As runc: a warning, and the process runs without it
			// (an ambient capability must be permitted and
			// inheritable; the container's own stderr says so).
			fmt.Fprintf(os.Stderr, "reconciled: warning: ambient capability %d not raised (it must be permitted and inheritable): %v\n", c, err)
		}
	}
	return nil
}
