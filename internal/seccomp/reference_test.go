package seccomp

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
)

// TestAgreesWithProfile runs each program on every syscall number of
// every architecture it knows (and numbers past them), with argument
// values either side of those its conditions name, and compares what it
// returns with decide: the profile read rule by rule, in Go. So a change
// to how the program is laid out (the search tree, the shared returns,
// the long jumps) cannot change a decision.
func TestAgreesWithProfile(t *testing.T) {
	errno := func(n uint) *uint { return &n }
	var many []specs.LinuxSyscall
	for i := uint64(0); i < 120; i++ {
		many = append(many, specs.LinuxSyscall{Names: []string{"ioctl"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 1, Value: 1000 + 7*i, Op: specs.OpEqualTo}}})
	}
	many = append(many, specs.LinuxSyscall{Names: []string{"read", "write", "getpid"}, Action: specs.ActAllow})
	mixed := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: errno(38),
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"write"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 1, Op: specs.OpEqualTo}, {Index: 2, Value: 10 | 3<<32, Op: specs.OpLessThan}}},
			{Names: []string{"write", "pwrite64"}, Action: specs.ActLog, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 2, Op: specs.OpNotEqual}}},
			{Names: []string{"write"}, Action: specs.ActErrno, ErrnoRet: errno(13)},
			{Names: []string{"close"}, Action: specs.ActTrap, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 3, Op: specs.OpEqualTo}, {Index: 0, Value: 4 | 1<<32, Op: specs.OpEqualTo}}},
			{Names: []string{"mmap"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 2, Value: 4, ValueTwo: 0, Op: specs.OpMaskedEqual}, {Index: 3, Value: 0xffffffff, Op: specs.OpLessEqual},
				{Index: 4, Value: 1 << 33, Op: specs.OpGreaterThan}, {Index: 5, Value: 9, Op: specs.OpGreaterEqual}}},
			// Runs of equality tests on one argument (equalRun), with
			// other actions, another high half, another argument and a
			// value repeated in between.
			{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 2, Op: specs.OpEqualTo}}},
			{Names: []string{"socket"}, Action: specs.ActLog, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 10, Op: specs.OpEqualTo}}},
			{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 5 | 1<<32, Op: specs.OpEqualTo}}},
			{Names: []string{"socket"}, Action: specs.ActErrno, ErrnoRet: errno(13), Args: []specs.LinuxSeccompArg{{Index: 1, Value: 1, Op: specs.OpEqualTo}}},
			{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 17, Op: specs.OpEqualTo}}},
			{Names: []string{"socket"}, Action: specs.ActTrap, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 2, Op: specs.OpEqualTo}}},
			{Names: []string{"socket"}, Action: specs.ActTrap, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 18, Op: specs.OpEqualTo}}},
			{Names: []string{"socket"}, Action: specs.ActErrno, ErrnoRet: errno(13)},
			{Names: []string{"getpid", "getppid", "kcmp"}, Action: specs.ActKillProcess},
			{Names: []string{"gettid"}, Action: specs.ActTrace, ErrnoRet: errno(5)},
			{Names: []string{"read", "readv", "execve"}, Action: specs.ActAllow},
		}}
	for _, c := range []struct {
		name   string
		goarch string
		s      *specs.LinuxSeccomp
	}{
		{"Docker's default, amd64", "amd64", defaultSpec(t, "amd64")},
		{"Docker's default, arm64", "arm64", defaultSpec(t, "arm64")},
		{"conditions and actions mixed", "amd64", mixed},
		{"long jumps", "amd64", &specs.LinuxSeccomp{DefaultAction: specs.ActKillProcess, Syscalls: many}},
		{"allow by default", "amd64", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"mount", "umount2"}, Action: specs.ActErrno}}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := Compile(c.s, c.goarch)
			if err != nil {
				t.Fatal(err)
			}
			vm := newVM(t, p)
			host := hostArches[c.goarch]
			type archNr struct {
				audit uint32
				table map[string]uint32
			}
			arches := []archNr{{host.native.audit, host.native.nums()}}
			for _, a := range host.sub {
				arches = append(arches, archNr{a.audit, a.nums()})
			}
			arches = append(arches, archNr{auditArchAARCH64, nil}, archNr{auditArchX86_64, nil})
			rng := rand.New(rand.NewPCG(1, 2))
			runs := 0
			for _, a := range arches {
				nrs := map[uint32]bool{}
				for _, nr := range a.table {
					nrs[nr], nrs[nr+1] = true, true
					if nr > 0 {
						nrs[nr-1] = true
					}
				}
				for nr := uint32(0); nr < 1100; nr += 13 {
					nrs[nr], nrs[nr|x32SyscallBit] = true, true
				}
				nrs[0x0f0001], nrs[0x0f0007], nrs[0xffffffff] = true, true, true
				for nr := range nrs {
					for _, args := range argSets(c.s, rng) {
						want := decide(t, c.s, c.goarch, a.audit, nr, args)
						if got := runVM(t, vm, a.audit, nr, args); got != want {
							t.Fatalf("arch %#x nr %#x args %#x: the program returns %#x, the profile says %#x", a.audit, nr, args, got, want)
						}
						runs++
					}
				}
			}
			t.Logf("%d instructions, %d calls agree", p.Len(), runs)
		})
	}
}

// argSets returns argument vectors: zeros; for each value a condition
// names, that value and its neighbours (the high half flipped too) in
// every argument, and in its own argument only; and a few random ones.
func argSets(s *specs.LinuxSeccomp, rng *rand.Rand) [][6]uint64 {
	out := [][6]uint64{{}}
	for _, sc := range s.Syscalls {
		for _, a := range sc.Args {
			for _, v := range []uint64{a.Value, a.Value - 1, a.Value + 1, a.Value ^ 1<<32, a.ValueTwo, a.Value &^ 0xffffffff} {
				var all, one [6]uint64
				for i := range all {
					all[i] = v
				}
				one[a.Index] = v
				out = append(out, all, one)
			}
		}
	}
	// Every profile gets the same number of random vectors; keep the
	// condition-heavy ones bounded.
	if len(out) > 60 {
		rng.Shuffle(len(out)-1, func(i, j int) { out[i+1], out[j+1] = out[j+1], out[i+1] })
		out = out[:60]
	}
	for range 3 {
		var args [6]uint64
		for i := range args {
			args[i] = rng.Uint64() >> rng.IntN(64)
		}
		out = append(out, args)
	}
	return out
}

// decide is what s says about one call, read as libseccomp and runc do
// (see the package doc), without any program.
func decide(t *testing.T, s *specs.LinuxSeccomp, goarch string, audit, nr uint32, args [6]uint64) uint32 {
	t.Helper()
	host := hostArches[goarch]
	def, err := action(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		t.Fatal(err)
	}
	listed := func(a *archInfo) bool {
		for _, x := range s.Architectures {
			if host.sub[x] == a {
				return true
			}
		}
		return false
	}
	var a *archInfo
	switch {
	case audit == host.native.audit && goarch == "amd64" && nr&x32SyscallBit != 0:
		if !listed(archX32) {
			return retKillProcess
		}
		a = archX32
	case audit == host.native.audit:
		a = host.native
	default:
		for _, x := range host.sub {
			if x.audit == audit && x != archX32 && listed(x) {
				a = x
			}
		}
		if a == nil {
			return retKillProcess
		}
	}
	named := false
	for _, sc := range s.Syscalls {
		for _, name := range sc.Names {
			if n, ok := a.nums()[name]; ok && n == nr {
				named = true
			}
		}
	}
	if !named {
		if last := enosysAbove(enosysAboveLast(def), s, a); last != 0 && nr > last {
			return retErrno | errnoENOSYS
		}
		return def
	}
	// Rules with conditions first, in profile order, then the plain
	// ones; several conditions on one argument are one rule each.
	var withConds, plain []uint32
	var condRules [][]specs.LinuxSeccompArg
	for _, sc := range s.Syscalls {
		ret, err := action(sc.Action, sc.ErrnoRet)
		if err != nil {
			t.Fatal(err)
		}
		if ret == def {
			continue
		}
		hit := false
		for _, name := range sc.Names {
			if n, ok := a.nums()[name]; ok && n == nr {
				hit = true
			}
		}
		if !hit {
			continue
		}
		if len(sc.Args) == 0 {
			plain = append(plain, ret)
			continue
		}
		seen := map[uint]bool{}
		split := false
		for _, c := range sc.Args {
			split = split || seen[c.Index]
			seen[c.Index] = true
		}
		if split {
			for _, c := range sc.Args {
				condRules, withConds = append(condRules, []specs.LinuxSeccompArg{c}), append(withConds, ret)
			}
		} else {
			condRules, withConds = append(condRules, sc.Args), append(withConds, ret)
		}
	}
	for i, conds := range condRules {
		all := true
		for _, c := range conds {
			v := args[c.Index]
			var ok bool
			switch c.Op {
			case specs.OpEqualTo:
				ok = v == c.Value
			case specs.OpNotEqual:
				ok = v != c.Value
			case specs.OpLessThan:
				ok = v < c.Value
			case specs.OpLessEqual:
				ok = v <= c.Value
			case specs.OpGreaterThan:
				ok = v > c.Value
			case specs.OpGreaterEqual:
				ok = v >= c.Value
			case specs.OpMaskedEqual:
				ok = v&c.Value == c.ValueTwo
			}
			all = all && ok
		}
		if all {
			return withConds[i]
		}
	}
	if len(plain) > 0 {
		return plain[0]
	}
	return def
}

func newVM(t *testing.T, p *Program) *bpf.VM {
	t.Helper()
	raw := make([]bpf.RawInstruction, p.Len())
	for i := range raw {
		b := p.Code[8*i:]
		raw[i] = bpf.RawInstruction{Op: binary.NativeEndian.Uint16(b), Jt: b[2], Jf: b[3], K: binary.NativeEndian.Uint32(b[4:])}
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("program does not disassemble")
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("program is invalid: %v", err)
	}
	return vm
}

// runVM runs vm on one seccomp_data, written big-endian as run explains.
func runVM(t *testing.T, vm *bpf.VM, arch, nr uint32, args [6]uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[0:], nr)
	binary.BigEndian.PutUint32(data[4:], arch)
	for i, a := range args {
		binary.BigEndian.PutUint32(data[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(data[16+8*i+4:], uint32(a>>32))
	}
	r, err := vm.Run(data)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return uint32(r)
}
