package desired

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// allCaps are the Linux capabilities up to CAP_CHECKPOINT_RESTORE (5.9).
var allCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
	"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// DefaultCapabilities is the set container engines grant (containerd's
// oci.defaultUnixCaps, moby's caps.DefaultCapabilities), in their order.
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// knownCap reports whether c is one of allCaps (a scan of 41 names: no
// table built at every start of the binary).
func knownCap(c string) bool { return slices.Contains(allCaps, c) }

// normalizeCap turns "net_bind_service", "CAP_NET_BIND_SERVICE" or "all"
// into "CAP_NET_BIND_SERVICE" / "ALL".
func normalizeCap(s string) (string, error) {
	u := strings.ToUpper(s)
	if u == "ALL" {
		return "ALL", nil
	}
	if !strings.HasPrefix(u, "CAP_") {
		u = "CAP_" + u
	}
	if !knownCap(u) {
		return "", fmt.Errorf("%q is not a capability (use e.g. NET_BIND_SERVICE; see capabilities(7))", s)
	}
	return u, nil
}

// effectiveCaps applies drop then add to the default set, as moby's
// caps.TweakCapabilities does: "ALL" in drop empties the set first, "ALL"
// in add grants every capability but the ones dropped by name. Validation
// refuses a capability both added and dropped. The result is sorted.
func effectiveCaps(c Capabilities) []string {
	set := map[string]bool{}
	for _, d := range DefaultCapabilities {
		set[d] = true
	}
	for _, d := range c.Drop {
		if d == "ALL" {
			clear(set)
			break
		}
		delete(set, d)
	}
	for _, a := range c.Add {
		if a == "ALL" {
			for _, x := range allCaps {
				set[x] = true
			}
			for _, d := range c.Drop {
				delete(set, d)
			}
			break
		}
		set[a] = true
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
