package daemon

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The network prober's thread sleeps in epoll_wait between probes. Made
// as an ordinary syscall (unix.EpollWait: the runtime's entersyscall) the
// thread keeps its P while it sleeps; the runtime's sysmon thread, woken
// by the syscall, then wakes every 20 µs to 10 ms for 10 ms before it
// takes the P back (proc.go's retake leaves a P in a syscall alone for
// 10 ms while other Ps are idle). On a 2-core VM that is 107 µs of CPU per
// wake of the prober, against 6 µs when the P is handed off as the
// syscall begins, as the runtime does for the calls it knows block
// (entersyscallblock). The two runtime functions are pulled by linkname;
// both are marked in the runtime as kept for packages outside it
// (entersyscallblock for gVisor), so a Go release that drops them fails
// the build rather than the daemon.

//go:linkname entersyscallblock runtime.entersyscallblock
func entersyscallblock()

//go:linkname exitsyscall runtime.exitsyscall
func exitsyscall()

// epollWaitBlocking is epoll_wait(2) for a thread that sleeps in it: its
// P is handed off as the syscall begins. events must be on the heap (it
// is read and written by the kernel while the goroutine's stack could be
// moved). It must not split its stack between entering and leaving the
// syscall.
//
//go:nosplit
func epollWaitBlocking(epfd int, events []unix.EpollEvent, msec int) (int, error) {
	var p unsafe.Pointer
	if len(events) > 0 {
		p = unsafe.Pointer(&events[0])
	}
	entersyscallblock()
	r, _, errno := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(p), uintptr(len(events)), uintptr(msec), 0, 0)
	exitsyscall()
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}
