package executor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/internal/sys"
)

// LoadSpec reads bundle/config.json. It decodes it with decodeSpec, which
// reads as encoding/json does without its cold start (specjson.go).
func LoadSpec(bundle string) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("unable to read the bundle's config: %w", err)
	}
	s, err := decodeSpec(data)
	if err != nil {
		return nil, fmt.Errorf("unable to parse %s: %w", filepath.Join(bundle, "config.json"), err)
	}
	return s, nil
}

var nsFlags = map[specs.LinuxNamespaceType]int{
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
	specs.UserNamespace:    unix.CLONE_NEWUSER,
}

// procNsName is the name of a namespace type under /proc/PID/ns.
var procNsName = map[specs.LinuxNamespaceType]string{
	specs.PIDNamespace:     "pid",
	specs.NetworkNamespace: "net",
	specs.MountNamespace:   "mnt",
	specs.IPCNamespace:     "ipc",
	specs.UTSNamespace:     "uts",
	specs.CgroupNamespace:  "cgroup",
	specs.UserNamespace:    "user",
}

// nsJoin is a namespace to enter by path.
type nsJoin struct {
	Flag int    `json:"flag"`
	Path string `json:"path"`
}

// nsPlan splits the spec's namespaces into new ones (clone flags) and ones
// to join.
type nsPlan struct {
	New  int      `json:"new"`
	Join []nsJoin `json:"join,omitempty"`
	// UIDMappings and GIDMappings of a new user namespace: the monitor
	// writes them for the init before it execs (userns.go).
	UIDMappings []specs.LinuxIDMapping `json:"uidMappings,omitempty"`
	GIDMappings []specs.LinuxIDMapping `json:"gidMappings,omitempty"`
}

func (p nsPlan) has(flag int) bool { return p.New&flag != 0 }

func planNamespaces(s *specs.Spec) (nsPlan, error) {
	var p nsPlan
	if s.Linux == nil {
		return p, nil
	}
	seen := map[specs.LinuxNamespaceType]bool{}
	for _, ns := range s.Linux.Namespaces {
		if seen[ns.Type] {
			return p, fmt.Errorf("namespace %s given twice", ns.Type)
		}
		seen[ns.Type] = true
		flag, ok := nsFlags[ns.Type]
		if !ok {
			return p, fmt.Errorf("%s namespace: %w", ns.Type, ErrNotSupported)
		}
		if ns.Path == "" {
			p.New |= flag
		} else if flag == unix.CLONE_NEWUSER {
			return p, fmt.Errorf("linux.namespaces: joining the user namespace %s: %w (setns(CLONE_NEWUSER) needs a single-threaded process; give mappings for a new one instead)", ns.Path, ErrNotSupported)
		} else {
			p.Join = append(p.Join, nsJoin{Flag: flag, Path: ns.Path})
		}
	}
	if p.has(unix.CLONE_NEWUSER) {
		p.UIDMappings, p.GIDMappings = s.Linux.UIDMappings, s.Linux.GIDMappings
	}
	return p, nil
}

// validateSpec checks what must hold before anything is created.
func validateSpec(s *specs.Spec) (nsPlan, error) {
	if s.Process == nil {
		return nsPlan{}, fmt.Errorf("the spec has no process")
	}
	if len(s.Process.Args) == 0 {
		return nsPlan{}, fmt.Errorf("process.args is empty")
	}
	if s.Process.Terminal {
		return nsPlan{}, fmt.Errorf("process.terminal: %w", ErrNotSupported)
	}
	if s.Root == nil || s.Root.Path == "" {
		return nsPlan{}, fmt.Errorf("the spec has no root.path")
	}
	if s.Process.Cwd == "" || !filepath.IsAbs(s.Process.Cwd) {
		return nsPlan{}, fmt.Errorf("process.cwd must be an absolute path, got %q", s.Process.Cwd)
	}
	if err := checkUnenforced(s); err != nil {
		return nsPlan{}, err
	}
	if err := checkProcessSched(s.Process); err != nil {
		return nsPlan{}, err
	}
	if err := checkRealtime(s); err != nil {
		return nsPlan{}, err
	}
	p, err := planNamespaces(s)
	if err != nil {
		return p, err
	}
	if err := validateUserns(s, p); err != nil {
		return p, err
	}
	// The root filesystem is set up in a joined mount namespace as in a
	// new one (pivot_root included): never in the runtime's own, whose
	// root it would replace for every process there.
	if joins(p, unix.CLONE_NEWNS) && !ownNamespace(p, specs.MountNamespace) {
		return p, errors.New("linux.namespaces: the mount namespace to join is the runtime's own (the host's): the container's root would replace the host's; give a new one (no path) or another one")
	}
	if (s.Hostname != "" || s.Domainname != "") && !ownNamespace(p, specs.UTSNamespace) {
		return p, fmt.Errorf("hostname and domainname need a uts namespace of the container's own (a new one, or one joined that is not the host's)")
	}
	if s.Linux != nil {
		for k := range s.Linux.Sysctl {
			if err := checkSysctl(k, p); err != nil {
				return p, err
			}
		}
	}
	for _, r := range s.Process.Rlimits {
		if _, ok := rlimitNames[r.Type]; !ok {
			return p, fmt.Errorf("unknown rlimit %q", r.Type)
		}
	}
	return p, nil
}

// checkUnenforced refuses the security fields this runtime cannot enforce
// (ErrNotSupported), so that a spec never runs with less confinement than
// it asks for: AppArmor and SELinux labels, Intel RDT and personality.
// (linux.seccomp is enforced: seccomp.go; what its compiler cannot do,
// it refuses.)
func checkUnenforced(s *specs.Spec) error {
	switch {
	case s.Process.ApparmorProfile != "":
		return fmt.Errorf("process.apparmorProfile %q: AppArmor profiles are %w by this runtime (remove the field, or use runtime: runc)", s.Process.ApparmorProfile, ErrNotSupported)
	case s.Process.SelinuxLabel != "":
		return fmt.Errorf("process.selinuxLabel %q: SELinux labels are %w by this runtime", s.Process.SelinuxLabel, ErrNotSupported)
	case s.Linux == nil:
		return nil
	case s.Linux.MountLabel != "":
		return fmt.Errorf("linux.mountLabel %q: SELinux mount labels are %w by this runtime", s.Linux.MountLabel, ErrNotSupported)
	case s.Linux.IntelRdt != nil:
		return fmt.Errorf("linux.intelRdt: Intel RDT is %w by this runtime", ErrNotSupported)
	case s.Linux.Personality != nil:
		return fmt.Errorf("linux.personality: %w by this runtime", ErrNotSupported)
	}
	// Resource limits the cgroup drivers do not apply are refused, not
	// dropped.
	if what := cgroups.Unsupported(s.Linux.Resources); what != "" {
		return fmt.Errorf("%s: %w by this runtime (leave it out)", what, ErrNotSupported)
	}
	return nil
}

// checkSysctl refuses, as runc does, a sysctl that would change the
// host's value: one whose namespace (IPC for kernel.msg*, sem, shm* and
// fs.mqueue.*; network for net.*; UTS for kernel.domainname) is not a new
// one of the container's or one it joins that is not the host's, and any
// sysctl that belongs to no namespace.
func checkSysctl(key string, p nsPlan) error {
	ns, err := sys.SysctlNamespace(key)
	if err != nil {
		return err
	}
	if ownNamespace(p, specs.LinuxNamespaceType(ns)) {
		return nil
	}
	return fmt.Errorf("sysctl %q needs a %s namespace of the container's own (the host's would change): add one to linux.namespaces", key, ns)
}

// ownNamespace says whether the container gets a namespace of type t that
// is not the host's: a new one, or one it joins by path that is not this
// process's (writing a hostname or a sysctl there leaves the host alone).
func ownNamespace(p nsPlan, t specs.LinuxNamespaceType) bool {
	flag := nsFlags[t]
	if p.has(flag) {
		return true
	}
	for _, j := range p.Join {
		if j.Flag == flag && !sameNamespace(j.Path, "/proc/self/ns/"+procNsName[t]) {
			return true
		}
	}
	return false
}

// sameNamespace says whether the namespace files a and b are one
// namespace (unknown counts as the same: the safe answer).
func sameNamespace(a, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Stat(a, &sa) != nil || unix.Stat(b, &sb) != nil {
		return true
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

var rlimitNames = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE": unix.RLIMIT_NICE, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC,
	"RLIMIT_RSS": unix.RLIMIT_RSS, "RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING, "RLIMIT_STACK": unix.RLIMIT_STACK,
}

// loopbackUp sets IFF_UP on lo in the calling thread's network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("ioctl(SIOCGIFFLAGS)", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("ioctl(SIOCSIFFLAGS)", err)
	}
	return nil
}

// writeSysctl writes one sysctl through /proc/sys: the calling thread's
// namespaces decide which instance (net.*, kernel.hostname, ...) it hits.
func writeSysctl(key, value string) error {
	p := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	if err := os.WriteFile(p, []byte(value), 0); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}
