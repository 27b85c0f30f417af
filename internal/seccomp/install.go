package seccomp

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Install loads p into the calling thread (all threads with
// SECCOMP_FILTER_FLAG_TSYNC); it survives execve. The caller holds
// no_new_privs or CAP_SYS_ADMIN.
func (p *Program) Install() error {
	n := p.Len()
	if n == 0 || n > 0xffff || len(p.Code)%8 != 0 {
		return fmt.Errorf("seccomp: bad program of %d bytes", len(p.Code))
	}
	prog := unix.SockFprog{Len: uint16(n), Filter: (*unix.SockFilter)(unsafe.Pointer(&p.Code[0]))}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(p.Flags), uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return fmt.Errorf("install the seccomp filter: %w", os.NewSyscallError("seccomp", errno))
	}
	return nil
}
