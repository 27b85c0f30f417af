package seccomp

import (
	"errors"
	"testing"

	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// run executes p in x/net/bpf's VM on one seccomp_data (runVM).
func run(t *testing.T, p *Program, arch, nr uint32, args ...uint64) uint32 {
	t.Helper()
	var a [6]uint64
	copy(a[:], args)
	return runVM(t, newVM(t, p), arch, nr, a)
}

func defaultProfile(t *testing.T, goarch string) *Program {
	t.Helper()
	p, err := Compile(defaultSpec(t, goarch), goarch)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d instructions", goarch, p.Len())
	return p
}

// defaultSpec is Docker's default profile for a container with a few
// capabilities, with the architectures of goarch.
func defaultSpec(t *testing.T, goarch string) *specs.LinuxSeccomp {
	t.Helper()
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{
		Bounding: []string{"CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_SETGID", "CAP_NET_BIND_SERVICE"},
	}}}
	s, err := mobyseccomp.GetDefaultProfile(spec)
	if err != nil {
		t.Fatal(err)
	}
	// The profile was set up for this machine's GOARCH; name the
	// architectures for the one under test.
	switch goarch {
	case "amd64":
		s.Architectures = []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}
	case "arm64":
		s.Architectures = []specs.Arch{specs.ArchAARCH64, specs.ArchARM}
	}
	return s
}

const eperm = retErrno | 1

func TestDefaultProfileAMD64(t *testing.T) {
	p := defaultProfile(t, "amd64")
	x64, x86, x32 := uint32(auditArchX86_64), uint32(auditArchI386), uint32(x32SyscallBit)
	for _, c := range []struct {
		name     string
		arch, nr uint32
		args     []uint64
		want     uint32
	}{
		{"read", x64, sysnumAMD64()["read"], nil, retAllow},
		{"getppid", x64, sysnumAMD64()["getppid"], nil, retAllow},
		{"keyctl", x64, sysnumAMD64()["keyctl"], nil, eperm},
		{"add_key", x64, sysnumAMD64()["add_key"], nil, eperm},
		{"mount", x64, sysnumAMD64()["mount"], nil, eperm},
		{"kexec_load", x64, sysnumAMD64()["kexec_load"], nil, eperm},
		{"bpf", x64, sysnumAMD64()["bpf"], nil, eperm},
		{"open_by_handle_at", x64, sysnumAMD64()["open_by_handle_at"], nil, eperm},
		{"unshare(CLONE_NEWUSER)", x64, sysnumAMD64()["unshare"], []uint64{0x10000000}, eperm},
		{"clone(CLONE_NEWUSER)", x64, sysnumAMD64()["clone"], []uint64{0x10000000 | 17}, eperm},
		{"clone(SIGCHLD)", x64, sysnumAMD64()["clone"], []uint64{17}, retAllow},
		{"personality(0)", x64, sysnumAMD64()["personality"], []uint64{0}, retAllow},
		{"personality(0xffffffff)", x64, sysnumAMD64()["personality"], []uint64{0xffffffff}, retAllow},
		{"personality(5)", x64, sysnumAMD64()["personality"], []uint64{5}, eperm},
		{"a number above every one the profile names (runc: ENOSYS)", x64, 999, nil, retErrno | errnoENOSYS},
		{"i386 read", x86, sysnumX86()["read"], nil, retAllow},
		{"i386 keyctl", x86, sysnumX86()["keyctl"], nil, eperm},
		{"i386 socketcall", x86, sysnumX86()["socketcall"], nil, retAllow},
		{"x32 read", x64, x32 | sysnumAMD64()["read"], nil, retAllow},
		{"x32 keyctl", x64, x32 | sysnumAMD64()["keyctl"], nil, eperm},
		{"x32 execve (x32's own number)", x64, x32 | 520, nil, retAllow},
		{"x32 kexec_load (x32's own number)", x64, x32 | 528, nil, eperm},
		{"aarch64 on amd64", auditArchAARCH64, sysnumARM64()["read"], nil, retKillProcess},
	} {
		if got := run(t, p, c.arch, c.nr, c.args...); got != c.want {
			t.Errorf("%s: got %#x, want %#x", c.name, got, c.want)
		}
	}
}

func TestDefaultProfileARM64(t *testing.T) {
	p := defaultProfile(t, "arm64")
	for _, c := range []struct {
		name     string
		arch, nr uint32
		want     uint32
	}{
		{"read", auditArchAARCH64, sysnumARM64()["read"], retAllow},
		{"keyctl", auditArchAARCH64, sysnumARM64()["keyctl"], eperm},
		{"arm read", auditArchARM, sysnumARM()["read"], retAllow},
		{"arm keyctl", auditArchARM, sysnumARM()["keyctl"], eperm},
		{"x86_64 on arm64", auditArchX86_64, 0, retKillProcess},
	} {
		if got := run(t, p, c.arch, c.nr); got != c.want {
			t.Errorf("%s: got %#x, want %#x", c.name, got, c.want)
		}
	}
}

// TestWithoutX32 kills an x32 call when the profile lists only x86_64.
func TestWithoutX32(t *testing.T) {
	p, err := Compile(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow}, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if got := run(t, p, auditArchX86_64, x32SyscallBit|1); got != retKillProcess {
		t.Errorf("x32 write: got %#x, want kill", got)
	}
	if got := run(t, p, auditArchI386, 1); got != retKillProcess {
		t.Errorf("i386 exit: got %#x, want kill (not in the profile)", got)
	}
	if got := run(t, p, auditArchX86_64, 1); got != retAllow {
		t.Errorf("write: got %#x, want allow", got)
	}
}

// TestConditions checks each operator on 64-bit arguments against Go's
// own comparison, with values either side of the 32-bit halves.
func TestConditions(t *testing.T) {
	values := []uint64{0, 1, 5, 0xfffffffe, 0xffffffff, 0x100000000, 0x100000004, 0x100000005, 0x100000006,
		0x1ffffffff, 0x200000005, 0xffffffff00000000, 0xffffffff00000005, 0xfffffffffffffff0, 0xffffffffffffffff}
	ref := map[specs.LinuxSeccompOperator]func(a, v, v2 uint64) bool{
		specs.OpEqualTo:      func(a, v, _ uint64) bool { return a == v },
		specs.OpNotEqual:     func(a, v, _ uint64) bool { return a != v },
		specs.OpLessThan:     func(a, v, _ uint64) bool { return a < v },
		specs.OpLessEqual:    func(a, v, _ uint64) bool { return a <= v },
		specs.OpGreaterThan:  func(a, v, _ uint64) bool { return a > v },
		specs.OpGreaterEqual: func(a, v, _ uint64) bool { return a >= v },
		specs.OpMaskedEqual:  func(a, m, v uint64) bool { return a&m == v },
	}
	nr := sysnumAMD64()["personality"]
	for op, f := range ref {
		for _, v := range []uint64{5, 0xffffffff, 0x100000005, 0xffffffff00000005} {
			v2 := v & 0xff000000ff
			arg := specs.LinuxSeccompArg{Index: 2, Value: v, ValueTwo: v2, Op: op}
			if op == specs.OpMaskedEqual {
				arg.Value = 0xff000000ff
			}
			p, err := Compile(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"personality"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{arg}},
			}}, "amd64")
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range values {
				want := uint32(retAllow)
				if f(a, arg.Value, arg.ValueTwo) {
					want = eperm
				}
				if got := run(t, p, auditArchX86_64, nr, 0, 0, a); got != want {
					t.Errorf("%s value %#x valueTwo %#x, arg %#x: got %#x, want %#x", op, arg.Value, arg.ValueTwo, a, got, want)
				}
				// Another syscall is untouched, another argument is not looked at.
				if got := run(t, p, auditArchX86_64, nr+1, 0, 0, a); got != retAllow {
					t.Errorf("other syscall: got %#x", got)
				}
			}
		}
	}
}

// TestRuleLogic: conditions of a rule AND, rules of a syscall OR (first
// match decides), several conditions on one argument OR (runc).
func TestRuleLogic(t *testing.T) {
	errno := func(n uint) *uint { return &n }
	p, err := Compile(&specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: errno(38), Syscalls: []specs.LinuxSyscall{
		{Names: []string{"read", "no_such_call"}, Action: specs.ActAllow},
		{Names: []string{"write"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
			{Index: 0, Value: 1, Op: specs.OpEqualTo}, {Index: 2, Value: 10, Op: specs.OpLessThan}}},
		{Names: []string{"write"}, Action: specs.ActLog, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 2, Op: specs.OpEqualTo}}},
		{Names: []string{"write"}, Action: specs.ActErrno, ErrnoRet: errno(13)},
		{Names: []string{"close"}, Action: specs.ActTrap, Args: []specs.LinuxSeccompArg{
			{Index: 0, Value: 3, Op: specs.OpEqualTo}, {Index: 0, Value: 4, Op: specs.OpEqualTo}}},
		{Names: []string{"getpid"}, Action: specs.ActKillProcess},
		{Names: []string{"getppid"}, Action: specs.ActKill},
		{Names: []string{"gettid"}, Action: specs.ActTrace},
	}, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"}}, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if p.Flags != 3 {
		t.Errorf("flags %d, want 3", p.Flags)
	}
	n := sysnumAMD64()
	for _, c := range []struct {
		nr   uint32
		args []uint64
		want uint32
	}{
		{n["read"], nil, retAllow},
		{n["write"], []uint64{1, 0, 9}, retAllow},
		{n["write"], []uint64{1, 0, 10}, retErrno | 13},
		{n["write"], []uint64{1 | 1<<32, 0, 9}, retErrno | 13},
		{n["write"], []uint64{2, 0, 100}, retLog},
		{n["write"], []uint64{3}, retErrno | 13},
		{n["close"], []uint64{3}, retTrap},
		{n["close"], []uint64{4}, retTrap},
		{n["close"], []uint64{5}, retErrno | 38},
		{n["getpid"], nil, retKillProcess},
		{n["getppid"], nil, retKillThread},
		{n["gettid"], nil, retTrace | 1},
		{n["open"], nil, retErrno | 38},
	} {
		if got := run(t, p, auditArchX86_64, c.nr, c.args...); got != c.want {
			t.Errorf("nr %d args %#x: got %#x, want %#x", c.nr, c.args, got, c.want)
		}
	}
}

// TestLongJumps: a syscall with more rules than a conditional jump can
// skip (255 instructions) still compiles to a correct program.
func TestLongJumps(t *testing.T) {
	var rules []specs.LinuxSyscall
	for i := uint64(0); i < 200; i++ {
		rules = append(rules, specs.LinuxSyscall{Names: []string{"ioctl"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 1, Value: 1000 + i, Op: specs.OpEqualTo}}})
	}
	rules = append(rules, specs.LinuxSyscall{Names: []string{"read", "write"}, Action: specs.ActAllow})
	p, err := Compile(&specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: rules}, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() < 800 {
		t.Fatalf("only %d instructions: the test does not reach long jumps", p.Len())
	}
	nr := sysnumAMD64()["ioctl"]
	for _, c := range []struct {
		nr, arg uint64
		want    uint32
	}{{uint64(nr), 1000, retAllow}, {uint64(nr), 1199, retAllow}, {uint64(nr), 1200, eperm}, {uint64(nr), 999, eperm},
		{0, 0, retAllow}, {1, 0, retAllow}, {2, 0, eperm}, {uint64(nr) + 1, 0, retErrno | errnoENOSYS}} {
		if got := run(t, p, auditArchX86_64, uint32(c.nr), 0, c.arg); got != c.want {
			t.Errorf("nr %d arg %d: got %#x, want %#x", c.nr, c.arg, got, c.want)
		}
	}
}

// As runc's filters: a call numbered above the largest syscall the
// profile names on its architecture (whatever that rule's action) gets
// ENOSYS, unless the default lets calls through or already says ENOSYS;
// below it, unnamed numbers get the default.
func TestEnosysAboveLastNamed(t *testing.T) {
	const x32 = x32SyscallBit
	enosys := uint32(retErrno | errnoENOSYS)
	profile := func(def specs.LinuxSeccompAction, errnoRet *uint, arches ...specs.Arch) *Program {
		t.Helper()
		p, err := Compile(&specs.LinuxSeccomp{DefaultAction: def, DefaultErrnoRet: errnoRet, Architectures: arches,
			Syscalls: []specs.LinuxSyscall{
				{Names: []string{"read", "write"}, Action: specs.ActAllow},
				// The largest named: its action is the default's, and it
				// still counts.
				{Names: []string{"kcmp"}, Action: def, ErrnoRet: errnoRet},
			}}, "amd64")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	kcmp := sysnumAMD64()["kcmp"]
	enosysRet, eperm := uint(errnoENOSYS), uint32(retErrno|1)
	for _, c := range []struct {
		name string
		p    *Program
		arch uint32
		nr   uint32
		want uint32
	}{
		{"errno: read", profile(specs.ActErrno, nil), auditArchX86_64, 0, retAllow},
		{"errno: unnamed below the last", profile(specs.ActErrno, nil), auditArchX86_64, 2, eperm},
		{"errno: the last named", profile(specs.ActErrno, nil), auditArchX86_64, kcmp, eperm},
		{"errno: above the last", profile(specs.ActErrno, nil), auditArchX86_64, kcmp + 1, enosys},
		{"errno: far above", profile(specs.ActErrno, nil), auditArchX86_64, 1000, enosys},
		{"kill: above the last", profile(specs.ActKillProcess, nil), auditArchX86_64, 1000, enosys},
		{"kill: unnamed below", profile(specs.ActKillProcess, nil), auditArchX86_64, 2, retKillProcess},
		{"allow: above the last", profile(specs.ActAllow, nil), auditArchX86_64, 1000, retAllow},
		{"log: above the last", profile(specs.ActLog, nil), auditArchX86_64, 1000, retLog},
		{"errno ENOSYS: above the last", profile(specs.ActErrno, &enosysRet), auditArchX86_64, 1000, enosys},
		{"i386: above its last", profile(specs.ActErrno, nil, specs.ArchX86), auditArchI386, sysnumX86()["kcmp"] + 1, enosys},
		{"i386: below its last", profile(specs.ActErrno, nil, specs.ArchX86), auditArchI386, 2, eperm},
		{"x32: above its last", profile(specs.ActErrno, nil, specs.ArchX32), auditArchX86_64, x32 | 600, enosys},
		{"x32: below its last", profile(specs.ActErrno, nil, specs.ArchX32), auditArchX86_64, x32 | 2, eperm},
		{"x32 not in the profile", profile(specs.ActErrno, nil), auditArchX86_64, x32 | 2, retKillProcess},
	} {
		if got := run(t, c.p, c.arch, c.nr); got != c.want {
			t.Errorf("%s (nr %#x): got %#x, want %#x", c.name, c.nr, got, c.want)
		}
	}
}

func TestRefused(t *testing.T) {
	for name, s := range map[string]*specs.LinuxSeccomp{
		"unknown default": {DefaultAction: "SCMP_ACT_MAYBE"},
		"notify":          {DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActNotify}}},
		"unknown action":  {DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: "SCMP_ACT_NOPE"}}},
		"unknown op":      {DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Op: "SCMP_CMP_SOMETIMES"}}}}},
		"arg index":       {DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}}}},
		"unknown flag":    {DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_FOO"}},
		"listener":        {DefaultAction: specs.ActAllow, ListenerPath: "/run/l.sock"},
	} {
		if _, err := Compile(s, "amd64"); err == nil {
			t.Errorf("%s: compiled", name)
		} else if name == "notify" && !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v is not ErrUnsupported", name, err)
		}
	}
}

func BenchmarkCompileDefault(b *testing.B) {
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}
	s, err := mobyseccomp.GetDefaultProfile(spec)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Compile(s, "amd64"); err != nil {
			b.Fatal(err)
		}
	}
}
