package seccomp

import (
	"encoding/binary"
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
	arch := host.native.audit
	n := p.Len()
	var acc uint32
	// cBPF jumps only forward: at most n instructions run.
	for pc, steps := 0, 0; pc >= 0 && pc < n && steps < n; steps++ {
		b := p.Code[8*pc:]
		code := binary.NativeEndian.Uint16(b)
		jt, jf := int(b[2]), int(b[3])
		k := binary.NativeEndian.Uint32(b[4:])
		pc++
		switch code {
		case ldAbsW:
			switch k {
			case offNr:
				acc = nr
			case offArch:
				acc = arch
			default:
				return false // an argument or the instruction pointer
			}
		case andK:
			acc &= k
		case retK:
			return k == retAllow
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
			return false
		}
	}
	return false
}
