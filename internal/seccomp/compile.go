package seccomp

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ErrUnsupported marks a profile feature this package cannot enforce.
var ErrUnsupported = errors.New("not supported")

// Program is a compiled filter: Code holds the struct sock_filter array
// (native-endian), Flags the seccomp(2) filter flags.
type Program struct {
	Code  []byte `json:"code"`
	Flags uint   `json:"flags,omitempty"`
}

// Len is the number of instructions.
func (p *Program) Len() int { return len(p.Code) / 8 }

// Return values (linux/seccomp.h).
const (
	retKillProcess = 0x80000000
	retKillThread  = 0x00000000
	retTrap        = 0x00030000
	retErrno       = 0x00050000
	retTrace       = 0x7ff00000
	retLog         = 0x7ffc0000
	retAllow       = 0x7fff0000
	retDataMask    = 0x0000ffff
)

// Audit architectures (linux/audit.h).
const (
	auditArchX86_64  = 0xc000003e
	auditArchI386    = 0x40000003
	auditArchAARCH64 = 0xc00000b7
	auditArchARM     = 0x40000028
	x32SyscallBit    = 0x40000000
)

// Offsets in struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// archInfo is one architecture a filter can handle.
type archInfo struct {
	audit uint32
	nums  func() map[string]uint32 // built on first use
}

var (
	archX86_64  = &archInfo{auditArchX86_64, sysnumAMD64}
	archX86     = &archInfo{auditArchI386, sysnumX86}
	archX32     = &archInfo{auditArchX86_64, sync.OnceValue(x32Table)}
	archAARCH64 = &archInfo{auditArchAARCH64, sysnumARM64}
	archARM     = &archInfo{auditArchARM, sync.OnceValue(armTable)}
)

// hostArches says, per GOARCH, the native architecture and the others its
// kernel runs.
var hostArches = map[string]struct {
	native *archInfo
	sub    map[specs.Arch]*archInfo
}{
	"amd64": {archX86_64, map[specs.Arch]*archInfo{specs.ArchX86: archX86, specs.ArchX32: archX32}},
	"arm64": {archAARCH64, map[specs.Arch]*archInfo{specs.ArchARM: archARM}},
}

var nativeArch = map[string]specs.Arch{"amd64": specs.ArchX86_64, "arm64": specs.ArchAARCH64}

// x32Specific are the x32 calls with numbers of their own
// (arch/x86/entry/syscalls/syscall_64.tbl, "x32" ABI, 512-547).
var x32Specific = []string{
	"rt_sigaction", "rt_sigreturn", "ioctl", "readv", "writev", "recvfrom", "sendmsg",
	"recvmsg", "execve", "ptrace", "rt_sigpending", "rt_sigtimedwait", "rt_sigqueueinfo",
	"sigaltstack", "timer_create", "mq_notify", "kexec_load", "waitid", "set_robust_list",
	"get_robust_list", "vmsplice", "move_pages", "preadv", "pwritev", "rt_tgsigqueueinfo",
	"recvmmsg", "sendmmsg", "process_vm_readv", "process_vm_writev", "setsockopt",
	"getsockopt", "io_setup", "io_submit", "execveat", "preadv2", "pwritev2",
}

func x32Table() map[string]uint32 {
	t := make(map[string]uint32, len(sysnumAMD64()))
	for name, nr := range sysnumAMD64() {
		t[name] = nr | x32SyscallBit
	}
	for i, name := range x32Specific {
		t[name] = uint32(512+i) | x32SyscallBit
	}
	return t
}

// armTable adds arm's private calls (arch/arm/include/uapi/asm/unistd.h,
// __ARM_NR_BASE 0x0f0000).
func armTable() map[string]uint32 {
	t := make(map[string]uint32, len(sysnumARM())+5)
	for name, nr := range sysnumARM() {
		t[name] = nr
	}
	for name, nr := range map[string]uint32{"breakpoint": 0x0f0001, "cacheflush": 0x0f0002, "usr26": 0x0f0003, "usr32": 0x0f0004, "set_tls": 0x0f0005, "get_tls": 0x0f0006} {
		t[name] = nr
	}
	return t
}

var flagBits = map[specs.LinuxSeccompFlag]uint{
	"SECCOMP_FILTER_FLAG_TSYNC":      1,
	"SECCOMP_FILTER_FLAG_LOG":        2,
	"SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}

// action turns a spec action into a seccomp return value.
func action(a specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	data := uint32(1) // EPERM
	if errnoRet != nil {
		if *errnoRet > retDataMask {
			return 0, fmt.Errorf("errnoRet %d is out of range", *errnoRet)
		}
		data = uint32(*errnoRet)
	}
	switch a {
	case specs.ActKill, specs.ActKillThread:
		return retKillThread, nil
	case specs.ActKillProcess:
		return retKillProcess, nil
	case specs.ActTrap:
		return retTrap, nil
	case specs.ActErrno:
		return retErrno | data, nil
	case specs.ActTrace:
		return retTrace | data, nil
	case specs.ActLog:
		return retLog, nil
	case specs.ActAllow:
		return retAllow, nil
	case specs.ActNotify:
		return 0, fmt.Errorf("action %s: user notification is %w", a, ErrUnsupported)
	}
	return 0, fmt.Errorf("unknown seccomp action %q", a)
}

// rule is one way a syscall can match: all conds hold.
type rule struct {
	conds []specs.LinuxSeccompArg
	ret   uint32
}

// Compile turns s into a program for the machine goarch (runtime.GOARCH).
func Compile(s *specs.LinuxSeccomp, goarch string) (*Program, error) {
	host, ok := hostArches[goarch]
	if !ok {
		return nil, fmt.Errorf("seccomp on %s is %w", goarch, ErrUnsupported)
	}
	if s.ListenerPath != "" {
		return nil, fmt.Errorf("seccomp listenerPath: user notification is %w", ErrUnsupported)
	}
	p := &Program{}
	for _, f := range s.Flags {
		bit, ok := flagBits[f]
		if !ok {
			return nil, fmt.Errorf("seccomp flag %q is unknown or %w", f, ErrUnsupported)
		}
		p.Flags |= bit
	}
	def, err := action(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("defaultAction: %w", err)
	}
	// As runc (libcontainer/seccomp/patchbpf): unless the default lets
	// calls through (ALLOW, LOG, TRACE) or already is ERRNO(ENOSYS), a
	// call numbered above every syscall the profile names on its
	// architecture gets ENOSYS. Such a call is one a newer kernel added;
	// a program falls back from it (glibc from clone3 to clone) as on an
	// older kernel, instead of failing with the default's EPERM.
	enosys := enosysAboveLast(def)
	// The architectures: the native one always, then those of the
	// profile this kernel runs, once each.
	arches := []*archInfo{host.native}
	withX32 := false
	for _, a := range s.Architectures {
		if a == nativeArch[goarch] {
			continue
		}
		info, ok := host.sub[a]
		if !ok {
			continue // never seen on this machine
		}
		if info == archX32 {
			withX32 = true
			continue
		}
		if !containsArch(arches, info) {
			arches = append(arches, info)
		}
	}
	var c asm
	c.load(offArch)
	archLabels := make([]label, len(arches))
	for i, a := range arches {
		archLabels[i] = c.newLabel()
		c.jump(jeq, a.audit, archLabels[i], next)
	}
	c.ret(retKillProcess)
	x32, badArch := c.newLabel(), c.newLabel()
	for i, a := range arches {
		c.label(archLabels[i])
		table, err := rulesFor(s, a, def)
		if err != nil {
			return nil, err
		}
		c.load(offNr)
		if a == archX86_64 {
			if withX32 {
				c.jump(jge, x32SyscallBit, x32, next)
			} else {
				c.jump(jge, x32SyscallBit, badArch, next)
			}
		}
		c.dispatch(table, def, 0, x32SyscallBit-1, enosysAbove(enosys, s, a))
		if a == archX86_64 && withX32 {
			c.label(x32)
			t32, err := rulesFor(s, archX32, def)
			if err != nil {
				return nil, err
			}
			c.dispatch(t32, def, x32SyscallBit, 0xffffffff, enosysAbove(enosys, s, archX32))
		}
	}
	c.label(badArch)
	c.ret(retKillProcess)
	code, err := c.assemble()
	if err != nil {
		return nil, err
	}
	if len(code)/8 > 4096 {
		return nil, fmt.Errorf("seccomp profile compiles to %d instructions, more than the kernel's 4096", len(code)/8)
	}
	p.Code = code
	return p, nil
}

// enosysAboveLast reports whether, with default action def, calls above
// the last one a profile names get ENOSYS (see Compile).
func enosysAboveLast(def uint32) bool {
	return def != retAllow && def != retLog && def&^retDataMask != retTrace && def != retErrno|errnoENOSYS
}

// errnoENOSYS is ENOSYS on every architecture here.
const errnoENOSYS = 38

// enosysAbove is the number above which calls on a get ENOSYS: the
// largest the profile names there (whatever its action), as runc has it;
// 0, none, when on is false or the profile names none on a.
func enosysAbove(on bool, s *specs.LinuxSeccomp, a *archInfo) uint32 {
	var last uint32
	if !on {
		return 0
	}
	for _, sc := range s.Syscalls {
		for _, name := range sc.Names {
			if nr, ok := a.nums()[name]; ok && nr > last {
				last = nr
			}
		}
	}
	return last
}

func containsArch(l []*archInfo, a *archInfo) bool {
	for _, x := range l {
		if x == a {
			return true
		}
	}
	return false
}

// entry is one rule of one syscall number.
type entry struct {
	nr    uint32
	order int // in the profile
	rule
}

// rulesFor resolves the profile's rules for one architecture: sorted by
// syscall number, each number's in the order they are tried (those with
// conditions first, in profile order, then the plain ones).
func rulesFor(s *specs.LinuxSeccomp, a *archInfo, def uint32) ([]entry, error) {
	out := make([]entry, 0, 2*len(s.Syscalls))
	for i, sc := range s.Syscalls {
		ret, err := action(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("syscalls[%d] (%v): %w", i, sc.Names, err)
		}
		for _, arg := range sc.Args {
			if arg.Index > 5 {
				return nil, fmt.Errorf("syscalls[%d] (%v): argument index %d is out of range (0-5)", i, sc.Names, arg.Index)
			}
			if _, ok := ops[arg.Op]; !ok {
				return nil, fmt.Errorf("syscalls[%d] (%v): unknown operator %q", i, sc.Names, arg.Op)
			}
		}
		if ret == def {
			continue
		}
		// One rule, or (runc) one per condition when an argument
		// has several.
		groups := [][]specs.LinuxSeccompArg{sc.Args}
		var seen [6]bool
		for _, arg := range sc.Args {
			if seen[arg.Index] {
				groups = groups[:0]
				for _, arg := range sc.Args {
					groups = append(groups, []specs.LinuxSeccompArg{arg})
				}
				break
			}
			seen[arg.Index] = true
		}
		for _, name := range sc.Names {
			nr, ok := a.nums()[name]
			if !ok {
				continue
			}
			for _, g := range groups {
				out = append(out, entry{nr, len(out), rule{conds: g, ret: ret}})
			}
		}
	}
	slices.SortFunc(out, func(x, y entry) int {
		switch {
		case x.nr != y.nr:
			return cmp.Compare(x.nr, y.nr)
		case len(x.conds) > 0 && len(y.conds) == 0:
			return -1
		case len(x.conds) == 0 && len(y.conds) > 0:
			return 1
		}
		return cmp.Compare(x.order, y.order)
	})
	return out, nil
}

var ops = map[specs.LinuxSeccompOperator]bool{
	specs.OpNotEqual: true, specs.OpLessThan: true, specs.OpLessEqual: true, specs.OpEqualTo: true,
	specs.OpGreaterEqual: true, specs.OpGreaterThan: true, specs.OpMaskedEqual: true,
}

// interval is a range of syscall numbers with one outcome: a plain
// return value, or the rules of one number.
type interval struct {
	lo, hi uint32
	ret    uint32
	rules  []rule // when set, lo == hi
}

// dispatch emits the code that finds nr (in A) among the entries' numbers
// in [lo, hi] by binary search and returns its action; numbers above
// enosysFrom, when it is in [lo, hi), return ENOSYS instead of def.
func (c *asm) dispatch(entries []entry, def uint32, lo, hi uint32, enosysFrom uint32) {
	var ivs []interval
	add := func(iv interval) {
		if n := len(ivs); n > 0 && ivs[n-1].rules == nil && iv.rules == nil && ivs[n-1].ret == iv.ret {
			ivs[n-1].hi = iv.hi
			return
		}
		ivs = append(ivs, iv)
	}
	next, found := lo, false
	for i := 0; i < len(entries); {
		nr := entries[i].nr
		j := i + 1
		for j < len(entries) && entries[j].nr == nr {
			j++
		}
		group := entries[i:j]
		i = j
		if nr < lo || nr > hi {
			continue
		}
		if nr > next {
			add(interval{lo: next, hi: nr - 1, ret: def})
		}
		if len(group) == 1 && len(group[0].conds) == 0 {
			add(interval{lo: nr, hi: nr, ret: group[0].ret})
		} else {
			rs := make([]rule, len(group))
			for k := range group {
				rs[k] = group[k].rule
			}
			add(interval{lo: nr, hi: nr, rules: rs})
		}
		next, found = nr+1, true
		if nr == hi {
			break
		}
	}
	end := hi
	if enosysFrom >= lo && enosysFrom < hi && enosysFrom != 0 {
		end = enosysFrom
	}
	if !found || next-1 < end {
		add(interval{lo: next, hi: end, ret: def})
	}
	if end < hi {
		add(interval{lo: end + 1, hi: hi, ret: retErrno | errnoENOSYS})
	}
	c.tree(ivs, def)
}

// tree emits a binary search over ivs (A holds the number). The leaves
// that only return are not instructions of their own: the jump above
// them goes to a return shared by every leaf of the same subtree with
// that value (pool), placed right after the subtree, in reach of a
// conditional jump. The kernel checks and JIT-compiles every instruction
// of a filter when the container's init loads it: Docker's default
// profile is a third shorter this way (1128 to 768 instructions; 480
// with equalRun), and no call runs more of it.
func (c *asm) tree(ivs []interval, def uint32) {
	if c.pool != nil || treeSize(ivs) > poolReach {
		c.node(ivs, def)
		return
	}
	c.pool = map[uint32]label{}
	c.node(ivs, def)
	c.flushPool()
}

// poolReach bounds the code between a jump to a pooled return and the
// return (a conditional jump reaches 255 instructions ahead; the pool's
// own few returns come after the subtree).
const poolReach = 240

// node emits the search over ivs; with a pool open, its plain leaves are
// jumps to the pool.
func (c *asm) node(ivs []interval, def uint32) {
	if len(ivs) == 1 {
		iv := ivs[0]
		if iv.rules == nil {
			c.ret(iv.ret)
			return
		}
		c.rules(iv.rules, def)
		return
	}
	mid := len(ivs) / 2
	left, right := ivs[:mid], ivs[mid:]
	jt, jf := c.newLabel(), next
	rightPooled := false
	if l, ok := c.pooled(right); ok {
		jt, rightPooled = l, true
	}
	if l, ok := c.pooled(left); ok {
		jf = l
	}
	c.jump(jge, right[0].lo, jt, jf)
	if jf == next {
		c.tree(left, def)
	}
	if !rightPooled {
		c.label(jt)
		c.tree(right, def)
	}
}

// pooled returns the pooled return of ivs when it is one leaf that
// only returns and a pool is open.
func (c *asm) pooled(ivs []interval) (label, bool) {
	if c.pool == nil || len(ivs) != 1 || ivs[0].rules != nil {
		return 0, false
	}
	return c.poolRet(ivs[0].ret), true
}

// poolRet returns the label of the open pool's return of v.
func (c *asm) poolRet(v uint32) label {
	l, ok := c.pool[v]
	if !ok {
		l = c.newLabel()
		c.pool[v] = l
		c.poolOrder = append(c.poolOrder, v)
	}
	return l
}

// flushPool emits the open pool's returns (reached only by jumps: the
// code before them ends in returns) and closes it.
func (c *asm) flushPool() {
	for _, v := range c.poolOrder {
		c.label(c.pool[v])
		c.ret(v)
	}
	c.pool, c.poolOrder = nil, nil
}

// treeSize is an upper bound on the instructions node emits for ivs
// without a pool (a jump and a return per plain leaf, the rules' code).
func treeSize(ivs []interval) int {
	n := len(ivs) - 1
	for _, iv := range ivs {
		if iv.rules == nil {
			n++
			continue
		}
		n += rulesSize(iv.rules)
	}
	return n
}

// rulesSize is an upper bound on what rules emits for rs.
func rulesSize(rs []rule) int {
	n := 1
	for _, r := range rs {
		n += 1 + 6*len(r.conds)
	}
	return n
}

// rules emits the rules of one syscall: the first whose conditions all
// hold returns its action; none, the default. With a pool open, the
// returns are the pool's.
func (c *asm) rules(rs []rule, def uint32) {
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		if len(r.conds) == 0 {
			c.ret(r.ret) // the rules after it are never reached
			return
		}
		if n := c.equalRun(rs[i:]); n > 1 {
			i += n - 1
			continue
		}
		fail := c.newLabel()
		for k, cond := range r.conds {
			if k == len(r.conds)-1 && c.pool != nil {
				c.cond(cond, c.poolRet(r.ret), fail)
				break
			}
			pass := c.newLabel()
			c.cond(cond, pass, fail)
			c.label(pass)
		}
		if c.pool == nil {
			c.ret(r.ret)
		}
		c.label(fail)
	}
	c.ret(def)
}

// equalRun emits, with a pool open, the rules at the start of rs that
// each test one argument for equality with a value of the same high half
// (socket's address families, personality's values in Docker's default)
// as one test of the high half and a jump per low half, and returns how
// many it took; 0 or 1: none emitted (1: no run to share).
func (c *asm) equalRun(rs []rule) int {
	if c.pool == nil {
		return 0
	}
	single := func(r rule) (specs.LinuxSeccompArg, bool) {
		if len(r.conds) != 1 || r.conds[0].Op != specs.OpEqualTo {
			return specs.LinuxSeccompArg{}, false
		}
		return r.conds[0], true
	}
	first, ok := single(rs[0])
	if !ok {
		return 0
	}
	n := 1
	for n < len(rs) {
		a, ok := single(rs[n])
		if !ok || a.Index != first.Index || a.Value>>32 != first.Value>>32 {
			break
		}
		n++
	}
	if n < 2 {
		return n
	}
	lo := uint32(offArgs + 8*first.Index)
	fail := c.newLabel()
	c.load(lo + 4)
	c.jump(jeq, uint32(first.Value>>32), next, fail)
	c.load(lo)
	for _, r := range rs[:n] {
		c.jump(jeq, uint32(r.conds[0].Value), c.poolRet(r.ret), next)
	}
	c.label(fail)
	return n
}

// cond emits one 64-bit comparison: on success it jumps to pass, on
// failure to fail (both ahead of it; the caller places them).
func (c *asm) cond(a specs.LinuxSeccompArg, pass, fail label) {
	lo := uint32(offArgs + 8*a.Index)
	hi := lo + 4
	v, v2 := a.Value, a.ValueTwo
	vlo, vhi := uint32(v), uint32(v>>32)
	switch a.Op {
	case specs.OpEqualTo:
		c.load(hi)
		c.jump(jeq, vhi, next, fail)
		c.load(lo)
		c.jump(jeq, vlo, pass, fail)
	case specs.OpNotEqual:
		c.load(hi)
		c.jump(jeq, vhi, next, pass)
		c.load(lo)
		c.jump(jeq, vlo, fail, pass)
	case specs.OpGreaterThan, specs.OpGreaterEqual:
		last := uint16(jgt)
		if a.Op == specs.OpGreaterEqual {
			last = jge
		}
		c.load(hi)
		c.jump(jgt, vhi, pass, next)
		c.jump(jeq, vhi, next, fail)
		c.load(lo)
		c.jump(last, vlo, pass, fail)
	case specs.OpLessThan, specs.OpLessEqual:
		// a < v is !(a >= v); a <= v is !(a > v).
		last := uint16(jge)
		if a.Op == specs.OpLessEqual {
			last = jgt
		}
		c.load(hi)
		c.jump(jgt, vhi, fail, next)
		c.jump(jeq, vhi, next, pass)
		c.load(lo)
		c.jump(last, vlo, fail, pass)
	case specs.OpMaskedEqual:
		// libseccomp: (arg & Value) == ValueTwo.
		c.load(hi)
		c.and(vhi)
		c.jump(jeq, uint32(v2>>32), next, fail)
		c.load(lo)
		c.and(vlo)
		c.jump(jeq, uint32(v2), pass, fail)
	}
}

// BPF opcodes (linux/bpf_common.h).
const (
	ldAbsW = 0x20 // BPF_LD|BPF_W|BPF_ABS
	andK   = 0x54 // BPF_ALU|BPF_AND|BPF_K
	retK   = 0x06 // BPF_RET|BPF_K
	ja     = 0x05 // BPF_JMP|BPF_JA
	jeq    = 0x15 // BPF_JMP|BPF_JEQ|BPF_K
	jgt    = 0x25 // BPF_JMP|BPF_JGT|BPF_K
	jge    = 0x35 // BPF_JMP|BPF_JGE|BPF_K
)

// label names a place in the program; next is the instruction after a
// jump.
type label int

const next label = 0

// item is an instruction, a conditional jump to labels, or a label.
type item struct {
	code       uint16
	k          uint32
	jt, jf     label
	at         label // isLabel: which
	isLabel    bool
	long       bool // the jump goes through ja trampolines
	isCondJump bool
}

// asm collects items and lays them out, turning conditional jumps whose
// targets lie more than 255 instructions ahead into a jump over two ja.
type asm struct {
	items  []item
	labels int
	// The open pool of shared returns (tree), by value, and its values
	// in the order first used.
	pool      map[uint32]label
	poolOrder []uint32
}

func (c *asm) newLabel() label { c.labels++; return label(c.labels) }
func (c *asm) load(off uint32) { c.items = append(c.items, item{code: ldAbsW, k: off}) }
func (c *asm) and(k uint32)    { c.items = append(c.items, item{code: andK, k: k}) }
func (c *asm) ret(k uint32)    { c.items = append(c.items, item{code: retK, k: k}) }
func (c *asm) label(l label)   { c.items = append(c.items, item{isLabel: true, at: l}) }
func (c *asm) jump(op uint16, k uint32, jt, jf label) {
	c.items = append(c.items, item{code: op, k: k, jt: jt, jf: jf, isCondJump: true})
}

func (it *item) size() int {
	switch {
	case it.isLabel:
		return 0
	case it.isCondJump && it.long:
		return 3 // jxx k, 0, 1; ja jt; ja jf
	}
	return 1
}

func (c *asm) assemble() ([]byte, error) {
	pos := make([]int, len(c.items))
	labels := make([]int, c.labels+1)
	for {
		for i := range labels {
			labels[i] = -1
		}
		n := 0
		for i := range c.items {
			pos[i] = n
			if c.items[i].isLabel {
				if labels[c.items[i].at] >= 0 {
					return nil, fmt.Errorf("seccomp: internal error: label %d twice", c.items[i].at)
				}
				labels[c.items[i].at] = n
			}
			n += c.items[i].size()
		}
		target := func(i int, l label) (int, error) {
			if l == next {
				return pos[i] + c.items[i].size(), nil
			}
			t := labels[l]
			if t < 0 {
				return 0, fmt.Errorf("seccomp: internal error: no label %d", l)
			}
			return t, nil
		}
		grew := false
		out := make([]byte, 0, 8*n)
		emit := func(code uint16, jt, jf uint8, k uint32) {
			out = binary.NativeEndian.AppendUint16(out, code)
			out = append(out, jt, jf)
			out = binary.NativeEndian.AppendUint32(out, k)
		}
		for i := range c.items {
			it := &c.items[i]
			switch {
			case it.isLabel:
			case !it.isCondJump:
				emit(it.code, 0, 0, it.k)
			default:
				t, err := target(i, it.jt)
				if err != nil {
					return nil, err
				}
				f, err := target(i, it.jf)
				if err != nil {
					return nil, err
				}
				if it.long {
					at := pos[i]
					emit(it.code, 0, 1, it.k)
					emit(ja, 0, 0, uint32(t-(at+2)))
					emit(ja, 0, 0, uint32(f-(at+3)))
					continue
				}
				dt, df := t-(pos[i]+1), f-(pos[i]+1)
				if dt < 0 || df < 0 {
					return nil, errors.New("seccomp: internal error: backward jump")
				}
				if dt > 255 || df > 255 {
					it.long, grew = true, true
					continue
				}
				emit(it.code, uint8(dt), uint8(df), it.k)
			}
		}
		if !grew {
			return out, nil
		}
	}
}
