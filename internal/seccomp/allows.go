package seccomp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
)

// AllowsAlways reports whether the filter lets system call nr of this
// machine's own architecture through (SECCOMP_RET_ALLOW) whatever the
// call's arguments and instruction pointer: the program's path for it
// reads nothing but the call's number and architecture. A program this
// package did not emit, or one it cannot follow, allows nothing here.
//
// The executor asks it of the calls a container's init still makes once
// its filter is in, to know whether the filter can go in earlier than
// those calls without changing what they do.
func (p *Program) AllowsAlways(nr uint32) bool {
	host, ok := hostArches[runtime.GOARCH]
	if !ok {
		return false
	}
	var data [64]byte
	binary.NativeEndian.PutUint32(data[offNr:], nr)
	binary.NativeEndian.PutUint32(data[offArch:], host.native.audit)
	ret, _, onlyNrArch, err := p.run(&data)
	return err == nil && onlyNrArch && ret == retAllow
}

// run runs p on one struct seccomp_data as the kernel's BPF would, for the
// opcodes this package emits, and returns the result, the instructions
// run, and whether the path read only the call's number and architecture.
func (p *Program) run(data *[64]byte) (ret uint32, steps int, onlyNrArch bool, err error) {
	onlyNrArch = true
	n := p.Len()
	var acc uint32
	// cBPF jumps only forward: at most n instructions run.
	for pc := 0; pc >= 0 && pc < n && steps < n; {
		b := p.Code[8*pc:]
		code := binary.NativeEndian.Uint16(b)
		jt, jf := int(b[2]), int(b[3])
		k := binary.NativeEndian.Uint32(b[4:])
		pc++
		steps++
		switch code {
		case ldAbsW:
			if k > 60 || k%4 != 0 {
				return 0, steps, false, fmt.Errorf("seccomp: load at offset %d", k)
			}
			if k != offNr && k != offArch {
				onlyNrArch = false // an argument or the instruction pointer
			}
			acc = binary.NativeEndian.Uint32(data[k:])
		case andK:
			acc &= k
		case retK:
			return k, steps, onlyNrArch, nil
		case ja:
			pc += int(k)
		case jeq, jgt, jge:
			var taken bool
			switch code {
			case jeq:
				taken = acc == k
			case jgt:
				taken = acc > k
			default:
				taken = acc >= k
			}
			if taken {
				pc += jt
			} else {
				pc += jf
			}
		default:
			return 0, steps, false, fmt.Errorf("seccomp: opcode %#x", code)
		}
	}
	return 0, steps, false, errors.New("seccomp: the program runs off its end")
}
