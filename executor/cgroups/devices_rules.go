package cgroups

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The device rules of linux.resources.devices, computed once for every
// place that enforces them: the eBPF program on cgroup v2 (devices_bpf.go)
// and the systemd DeviceAllow list (systemd_props.go). The v1 devices
// controller computes the same thing in the kernel from the rules written
// in order after a deny-all.

// Device access bits, as the kernel's eBPF device context has them.
const (
	accMknod = unix.BPF_DEVCG_ACC_MKNOD
	accRead  = unix.BPF_DEVCG_ACC_READ
	accWrite = unix.BPF_DEVCG_ACC_WRITE
	accAll   = accMknod | accRead | accWrite
)

// deviceMatch is what one exception names: a type ('c' or 'b') and a
// major and minor number, -1 for any.
type deviceMatch struct {
	typ          byte
	major, minor int64
}

func (d deviceMatch) String() string {
	n := func(v int64) string {
		if v < 0 {
			return "*"
		}
		return strconv.FormatInt(v, 10)
	}
	return string(d.typ) + " " + n(d.major) + ":" + n(d.minor)
}

// deviceException is one entry of a deviceFilter's exception list.
type deviceException struct {
	deviceMatch
	access uint32 // acc* bits
}

// deviceFilter is the outcome of an ordered list of device rules, as the
// v1 devices controller keeps it: a default (allow or deny every device)
// and exceptions to it. With a deny default, an access is allowed when one
// exception matches the device and holds every bit asked for; with an
// allow default, it is denied when one exception matches the device and
// holds any bit asked for.
type deviceFilter struct {
	allowAll bool
	except   []deviceException // in the order first made
}

// compileDeviceRules replays rules, in order, over "deny every device" (as
// runc does and as setDevicesV1 writes them): a rule of type "a" (or no
// type) resets the default to its own allow or deny and drops every
// exception, whatever its numbers and access say (the kernel's v1 meaning
// of "a"); a rule that goes against the default adds an exception, its
// access merged into one for the same device; a rule that goes with the
// default takes its access away from the exception for the same device.
// Taking access away from a device that a wider exception (a wildcard
// major or minor) covers is refused, as runc refuses it: the v1 kernel
// would silently ignore it, and neither the kernel nor systemd can express
// the hole.
func compileDeviceRules(rules []specs.LinuxDeviceCgroup) (deviceFilter, error) {
	var f deviceFilter
	for i, d := range rules {
		where := "linux.resources.devices[" + strconv.Itoa(i) + "]"
		access := accessBits(d.Access)
		var typ byte
		switch d.Type {
		case "", "a":
			f = deviceFilter{allowAll: d.Allow}
			continue
		case "b", "c":
			typ = d.Type[0]
		default:
			return deviceFilter{}, fmt.Errorf("%s: invalid type %q (want a, b or c)", where, d.Type)
		}
		major, err := deviceNumber(d.Major, "major")
		if err != nil {
			return deviceFilter{}, fmt.Errorf("%s: %w", where, err)
		}
		minor, err := deviceNumber(d.Minor, "minor")
		if err != nil {
			return deviceFilter{}, fmt.Errorf("%s: %w", where, err)
		}
		if access == 0 {
			continue // no access runc knows: the rule changes nothing
		}
		m := deviceMatch{typ: typ, major: major, minor: minor}
		if d.Allow != f.allowAll {
			f.add(m, access)
			continue
		}
		if err := f.remove(m, access); err != nil {
			return deviceFilter{}, fmt.Errorf("%s: %w", where, err)
		}
	}
	return f, nil
}

func (f *deviceFilter) add(m deviceMatch, access uint32) {
	for i := range f.except {
		if f.except[i].deviceMatch == m {
			f.except[i].access |= access
			return
		}
	}
	f.except = append(f.except, deviceException{deviceMatch: m, access: access})
}

func (f *deviceFilter) remove(m deviceMatch, access uint32) error {
	for _, wider := range []deviceMatch{
		{m.typ, -1, m.minor}, {m.typ, m.major, -1}, {m.typ, -1, -1},
	} {
		if wider == m {
			continue
		}
		for _, e := range f.except {
			if e.deviceMatch == wider && e.access&access != 0 {
				verb, was := "allow", "denies"
				if !f.allowAll {
					verb, was = "deny", "allows"
				}
				return fmt.Errorf("cannot %s %s %s: an earlier rule %s %s %s, and a hole in such a wildcard cannot be enforced; reorder the rules (the wider rule after a reset with type \"a\")",
					verb, m, accessString(access), was, e.deviceMatch, accessString(e.access))
			}
		}
	}
	for i := range f.except {
		if f.except[i].deviceMatch == m {
			f.except[i].access &^= access
			if f.except[i].access == 0 {
				f.except = append(f.except[:i], f.except[i+1:]...)
			}
			break
		}
	}
	return nil
}

// allows says what f decides for an access (acc* bits) to a device: the
// reference for the program (see program) and the tests.
func (f deviceFilter) allows(typ byte, major, minor uint32, access uint32) bool {
	for _, e := range f.except {
		if e.typ != typ || (e.major >= 0 && uint32(e.major) != major) || (e.minor >= 0 && uint32(e.minor) != minor) {
			continue
		}
		if f.allowAll && e.access&access != 0 {
			return false
		}
		if !f.allowAll && access&^e.access == 0 {
			return true
		}
	}
	return f.allowAll
}

// accessBits reads a rule's access as runc does (its Permissions' set
// operations, libcontainer/devices): r, w and m count, any other letter is
// ignored ("rwa", which runc's own tests write, is "rw"), and an empty
// access is every access (the runtime spec's default; runc refuses it).
func accessBits(s string) uint32 {
	if s == "" {
		return accAll
	}
	var a uint32
	for _, c := range s {
		switch c {
		case 'r':
			a |= accRead
		case 'w':
			a |= accWrite
		case 'm':
			a |= accMknod
		}
	}
	return a
}

func accessString(a uint32) string {
	var b strings.Builder
	for _, x := range []struct {
		bit uint32
		c   byte
	}{{accRead, 'r'}, {accWrite, 'w'}, {accMknod, 'm'}} {
		if a&x.bit != 0 {
			b.WriteByte(x.c)
		}
	}
	return b.String()
}

// deviceNumber is -1 for a missing or negative number (any device), else
// the number, at most MaxInt32 (the program compares 32-bit immediates;
// Linux majors have 12 bits and minors 20).
func deviceNumber(p *int64, what string) (int64, error) {
	if p == nil || *p < 0 {
		return -1, nil
	}
	if *p > math.MaxInt32 {
		return 0, fmt.Errorf("%s %d is out of range (at most %d)", what, *p, math.MaxInt32)
	}
	return *p, nil
}

// The program: eBPF for BPF_PROG_TYPE_CGROUP_DEVICE, run by the
// kernel on every open and mknod of a device node by a process of the
// cgroup (or of one below it) with the context
//
//	struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
//
// where access_type is (access << 16) | type. It returns 1 to allow, 0 to
// deny (EPERM). It loads the four values into R2..R5, then tests each
// exception in order and returns its verdict on the first match, and the
// default at the end: the same decision as deviceFilter.allows.

// Instruction encodings (linux/bpf_common.h, linux/bpf.h).
const (
	opLdxW    = 0x61 // BPF_LDX | BPF_MEM | BPF_W
	opAnd32K  = 0x54 // BPF_ALU | BPF_AND | BPF_K
	opRsh32K  = 0x74 // BPF_ALU | BPF_RSH | BPF_K
	opMov32X  = 0xbc // BPF_ALU | BPF_MOV | BPF_X
	opMov32K  = 0xb4 // BPF_ALU | BPF_MOV | BPF_K
	opJeqK    = 0x15 // BPF_JMP | BPF_JEQ | BPF_K
	opJneK    = 0x55 // BPF_JMP | BPF_JNE | BPF_K
	opJneX    = 0x5d // BPF_JMP | BPF_JNE | BPF_X
	opExit    = 0x95 // BPF_JMP | BPF_EXIT
	insnBytes = 8
)

// insn is one eBPF instruction before encoding.
type insn struct {
	op       uint8
	dst, src uint8
	off      int16
	imm      int32
}

// program returns f as eBPF instructions.
func (f deviceFilter) program() []insn {
	p := []insn{
		{op: opLdxW, dst: 2, src: 1, off: 0}, // R2 = ctx->access_type
		{op: opAnd32K, dst: 2, imm: 0xffff},  // R2 &= 0xffff: the type
		{op: opLdxW, dst: 3, src: 1, off: 0}, // R3 = ctx->access_type
		{op: opRsh32K, dst: 3, imm: 16},      // R3 >>= 16: the access
		{op: opLdxW, dst: 4, src: 1, off: 4}, // R4 = ctx->major
		{op: opLdxW, dst: 5, src: 1, off: 8}, // R5 = ctx->minor
	}
	verdict := func(allow bool) []insn {
		v := int32(0)
		if allow {
			v = 1
		}
		return []insn{{op: opMov32K, dst: 0, imm: v}, {op: opExit}}
	}
	for _, e := range f.except {
		typ := int32(unix.BPF_DEVCG_DEV_CHAR)
		if e.typ == 'b' {
			typ = unix.BPF_DEVCG_DEV_BLOCK
		}
		// Each test jumps to the next block when it fails; off is
		// patched once the block's length is known ("next").
		block := []insn{{op: opJneK, dst: 2, imm: typ}}
		if e.major >= 0 {
			block = append(block, insn{op: opJneK, dst: 4, imm: int32(e.major)})
		}
		if e.minor >= 0 {
			block = append(block, insn{op: opJneK, dst: 5, imm: int32(e.minor)})
		}
		switch {
		case f.allowAll:
			// Denied when any bit asked for is in the exception.
			block = append(block,
				insn{op: opMov32X, dst: 1, src: 3},
				insn{op: opAnd32K, dst: 1, imm: int32(e.access)},
				insn{op: opJeqK, dst: 1, imm: 0})
		case e.access != accAll:
			// Allowed when every bit asked for is in the exception.
			block = append(block,
				insn{op: opMov32X, dst: 1, src: 3},
				insn{op: opAnd32K, dst: 1, imm: int32(e.access)},
				insn{op: opJneX, dst: 1, src: 3})
		}
		block = append(block, verdict(!f.allowAll)...)
		for i := range block {
			if op := block[i].op; op == opJeqK || op == opJneK || op == opJneX {
				block[i].off = int16(len(block) - i - 1)
			}
		}
		p = append(p, block...)
	}
	return append(p, verdict(f.allowAll)...)
}

// encodeProgram lays the instructions out as struct bpf_insn in the
// machine's byte order: code, dst_reg and src_reg in one byte (dst in the
// low nibble on little-endian machines, the high one on big-endian), off,
// imm.
func encodeProgram(p []insn) []byte {
	out := make([]byte, len(p)*insnBytes)
	little := binary.NativeEndian.Uint16([]byte{1, 0}) == 1
	for i, in := range p {
		b := out[i*insnBytes:]
		b[0] = in.op
		if little {
			b[1] = in.src<<4 | in.dst&0xf
		} else {
			b[1] = in.dst<<4 | in.src&0xf
		}
		binary.NativeEndian.PutUint16(b[2:], uint16(in.off))
		binary.NativeEndian.PutUint32(b[4:], uint32(in.imm))
	}
	return out
}
