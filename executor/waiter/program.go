package waiter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The setup runner (setup_amd64.S) runs lists of system calls that its
// creator sends it on fd 3, so that the work a process must do on itself
// (credentials, capabilities, no_new_privs, seccomp, its working
// directory, the wait for start and the final exec) needs no Go runtime in
// it. A Program is one such list, a chunk: the runner runs the calls of a
// chunk in order, then waits for the next one, so a creator can interleave
// its own work (a "ready" written by one chunk, the next chunk sent once the
// creator has done its part).

// SetupAvailable reports whether this architecture has the setup runner.
func SetupAvailable() bool { return len(setupCode) > 0 }

// SetupMemfd returns a close-on-exec, sealed memfd holding the setup
// runner. The process it becomes is seen as /proc/PID/exe and cannot write
// it.
func SetupMemfd() (int, error) { return memfd("reconciled-setup", elf(setupCode)) }

// SetupELF returns the setup runner as a static ELF executable.
func SetupELF() []byte { return elf(setupCode) }

// Slots of the runner. Slot ErrorSlot holds the fd a failing call writes
// its message to: 3, the creator's socket, until a call stores another
// (the exec fifo, once start may read it). The descriptors that came with
// the latest chunk are in FdSlot(0), FdSlot(1), ...; slots from FirstSlot
// on are the program's and keep their values from chunk to chunk.
const (
	ErrorSlot = 0
	MaxFds    = 16
	FirstSlot = 1 + MaxFds
	NumSlots  = 63 // a result can be stored in slots 0-62
)

// FdSlot is the slot of the i'th descriptor sent with a chunk.
func FdSlot(i int) int { return 1 + i }

const (
	chunkMagic = 0x31475250444c4352 // "RCLDPRG1"
	callWords  = 9
	maxChunk   = 1 << 24
)

// Arg is an argument of a call: a number, data in the chunk, or a slot.
type Arg struct {
	kind uint32
	v    uint64
}

const (
	kindImm = iota
	kindData
	kindSlot
	kindSlotAddr
)

// Imm is the number v.
func Imm(v uint64) Arg { return Arg{kindImm, v} }

// Int is the number v, negative ones (AT_FDCWD) included.
func Int(v int) Arg { return Arg{kindImm, uint64(int64(v))} }

// Slot is the value slot i holds when the call is made.
func Slot(i int) Arg { return Arg{kindSlot, uint64(i)} }

// SlotAddr is the address of slot i: a call can write a result there
// (pipe2's two fds land in slot i, packed, for example).
func SlotAddr(i int) Arg { return Arg{kindSlotAddr, uint64(i)} }

// Program is one chunk of calls for the setup runner.
type Program struct {
	calls  []call
	relocs []uint64
	data   []byte
}

type call struct {
	nr     uint32
	flags  uint32
	args   [6]uint64
	what   string
	exit   uint8
	expect uint64
}

// Call adds the system call nr with args; what says what it does, for
// the error it fails with ("mount proc on /proc"). A failed call ends the
// runner with exit status 1 unless Exit says otherwise.
func (p *Program) Call(what string, nr uintptr, args ...Arg) *CallOpts {
	if len(args) > 6 {
		panic("waiter: a system call has at most six arguments")
	}
	c := call{nr: uint32(nr), what: what, exit: 1}
	for i, a := range args {
		c.flags |= a.kind << (2 * i)
		c.args[i] = a.v
	}
	p.calls = append(p.calls, c)
	return &CallOpts{p: p, i: len(p.calls) - 1}
}

// CallOpts qualifies the call just added.
type CallOpts struct {
	p *Program
	i int
}

// Into stores the call's result in slot i.
func (o *CallOpts) Into(i int) *CallOpts {
	if i < 0 || i >= NumSlots {
		panic("waiter: no slot " + strconv.Itoa(i))
	}
	c := &o.p.calls[o.i]
	c.flags = c.flags&^(63<<12) | uint32(i+1)<<12
	return o
}

// Allow makes errno e count as success (mkdir of what exists: EEXIST); the
// result stored is then -e.
func (o *CallOpts) Allow(e syscall.Errno) *CallOpts {
	if e <= 0 || e > 255 {
		panic("waiter: errno out of range")
	}
	c := &o.p.calls[o.i]
	c.flags = c.flags&^(255<<20) | uint32(e)<<20
	return o
}

// Expect makes any other result than v a failure (a read of one byte
// that returns 0: the creator hung up).
func (o *CallOpts) Expect(v uint64) *CallOpts {
	c := &o.p.calls[o.i]
	c.flags |= 1 << 18
	c.expect = v
	return o
}

// Exit sets the exit status of the runner when the call fails.
func (o *CallOpts) Exit(status uint8) *CallOpts {
	o.p.calls[o.i].exit = status
	return o
}

// Bytes copies b into the chunk (8-byte aligned) and returns it as an
// argument: the data's address once the chunk is mapped.
func (p *Program) Bytes(b []byte) Arg {
	for len(p.data)%8 != 0 {
		p.data = append(p.data, 0)
	}
	off := len(p.data)
	p.data = append(p.data, b...)
	return Arg{kindData, uint64(off)}
}

// Zero reserves n zero bytes in the chunk, room for a call to write in.
func (p *Program) Zero(n int) Arg { return p.Bytes(make([]byte, n)) }

// Data returns the bytes of the data at a (Bytes, Zero, String) to the
// end of the chunk's data, to fill in place.
func (p *Program) Data(a Arg) []byte {
	if a.kind != kindData {
		panic("waiter: Data of an argument that is not data of the chunk")
	}
	return p.data[a.v:]
}

// String copies s into the chunk with a terminating NUL.
func (p *Program) String(s string) Arg {
	return p.Bytes(append([]byte(s), 0))
}

// SetPointer writes the address of to at offset off of the data at, once
// the chunk is mapped: the pointer fields of a structure a call reads
// (argv's strings, a sock_fprog's filter).
func (p *Program) SetPointer(at Arg, off int, to Arg) {
	if at.kind != kindData || to.kind != kindData {
		panic("waiter: SetPointer between data of the chunk only")
	}
	pos := int(at.v) + off
	binary.LittleEndian.PutUint64(p.data[pos:], to.v)
	p.relocs = append(p.relocs, uint64(pos))
}

// Strings copies ss into the chunk as a NULL-terminated array of pointers
// to NUL-terminated strings (an argv, an envp).
func (p *Program) Strings(ss []string) Arg {
	arr := p.Zero(8 * (len(ss) + 1))
	for i, s := range ss {
		p.SetPointer(arr, 8*i, p.String(s))
	}
	return arr
}

// Encode returns the chunk with its header, as the runner reads it.
func (p *Program) Encode() ([]byte, error) {
	le := binary.LittleEndian
	head := 16 + len(p.calls)*callWords*8 + len(p.relocs)*8
	msgs := make([]byte, 0, 64*len(p.calls))
	msgAt := make([]int, len(p.calls))
	for i, c := range p.calls {
		msgAt[i] = len(msgs)
		msgs = append(msgs, c.what...)
	}
	dataAt := head
	msgBase := dataAt + len(p.data)
	total := msgBase + len(msgs)
	if total > maxChunk {
		return nil, fmt.Errorf("setup program of %d bytes, more than the runner takes (%d)", total, maxChunk)
	}
	b := make([]byte, 16, 16+total)
	le.PutUint64(b[0:], chunkMagic)
	le.PutUint64(b[8:], uint64(total))
	chunk := make([]byte, total)
	le.PutUint64(chunk[0:], uint64(len(p.calls)))
	le.PutUint64(chunk[8:], uint64(len(p.relocs)))
	for i, c := range p.calls {
		w := chunk[16+i*callWords*8:]
		le.PutUint64(w[0:], uint64(c.nr)|uint64(c.flags)<<32)
		for j, a := range c.args {
			if c.flags>>(2*j)&3 == kindData {
				a += uint64(dataAt)
			}
			le.PutUint64(w[8+8*j:], a)
		}
		if len(c.what) > 0xffff {
			return nil, fmt.Errorf("setup program: message of %d bytes", len(c.what))
		}
		le.PutUint64(w[56:], uint64(msgBase+msgAt[i])|uint64(len(c.what))<<32|uint64(c.exit)<<48)
		le.PutUint64(w[64:], c.expect)
	}
	relAt := 16 + len(p.calls)*callWords*8
	for i, r := range p.relocs {
		le.PutUint64(chunk[relAt+8*i:], r+uint64(dataAt))
	}
	data := chunk[dataAt:msgBase]
	copy(data, p.data)
	for _, r := range p.relocs { // pointers are relative to the chunk
		le.PutUint64(data[r:], le.Uint64(data[r:])+uint64(dataAt))
	}
	copy(chunk[msgBase:], msgs)
	return append(b, chunk...), nil
}

// Send sends p to the runner on sock, with fds (at most MaxFds), which the
// runner finds in FdSlot(0), FdSlot(1), ...
func (p *Program) Send(sock int, fds ...int) error {
	if len(fds) > MaxFds {
		return fmt.Errorf("setup program: %d descriptors, at most %d", len(fds), MaxFds)
	}
	b, err := p.Encode()
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	n, err := sendmsg(sock, b, oob)
	if err != nil {
		return os.NewSyscallError("sendmsg", err)
	}
	for n < len(b) {
		m, err := unix.Write(sock, b[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("write", err)
		}
		n += m
	}
	return nil
}

func sendmsg(sock int, b, oob []byte) (int, error) {
	for {
		n, err := unix.SendmsgN(sock, b, oob, nil, unix.MSG_NOSIGNAL)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// SetupError is a call of a setup program that failed, as the runner
// reported it: what the call did and its errno (0: the call returned
// another result than expected).
type SetupError struct {
	What  string
	Errno syscall.Errno
}

func (e *SetupError) Error() string {
	if e.Errno == 0 {
		return e.What + ": unexpected result"
	}
	return e.What + ": " + e.Errno.Error()
}

func (e *SetupError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// errNoReport is what ParseSetupError returns for what the runner does
// not write.
var errNoReport = errors.New("not a setup runner's report")

// ParseSetupError parses what a failed call wrote to the error fd:
// "what: errno NNN".
func ParseSetupError(b []byte) (*SetupError, error) {
	s := string(b)
	i := strings.LastIndex(s, ": errno ")
	if i < 0 || len(s)-i-len(": errno ") != 3 {
		return nil, fmt.Errorf("%w: %q", errNoReport, s)
	}
	n, err := strconv.ParseUint(s[i+len(": errno "):], 10, 16)
	if err != nil {
		return nil, fmt.Errorf("%w: %q", errNoReport, s)
	}
	return &SetupError{What: s[:i], Errno: syscall.Errno(n)}, nil
}
