package main

import (
	"fmt"
	"net"
	"os"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// openPty opens a pseudo-terminal pair on the host's devpts: the master,
// and the slave that becomes a created container's stdio when its
// process.terminal is true. ONLCR is cleared, as runc does, so that the
// output reads as it would through a pipe.
func openPty() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open a terminal: %w", err)
	}
	fail := func(err error) (*os.File, *os.File, error) {
		m.Close()
		return nil, nil, err
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		return fail(os.NewSyscallError("ioctl(TIOCSPTLCK)", err))
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		return fail(os.NewSyscallError("ioctl(TIOCGPTN)", err))
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(fmt.Errorf("open the terminal's slave: %w", err))
	}
	if err := clearONLCR(s); err != nil {
		s.Close()
		return fail(err)
	}
	return m, s, nil
}

// clearONLCR stops the terminal from turning "\n" into "\r\n".
func clearONLCR(f *os.File) error {
	t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		return os.NewSyscallError("ioctl(TCGETS)", err)
	}
	t.Oflag &^= unix.ONLCR
	if err := unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t); err != nil {
		return os.NewSyscallError("ioctl(TCSETS)", err)
	}
	return nil
}

// sendConsole sends a terminal's master over the unix socket at path as
// runc's --console-socket does: one message whose data is the terminal's
// name and whose SCM_RIGHTS carries the fd (runc's recvtty, containerd's
// and podman's conmon read it so).
func sendConsole(path string, master *os.File) error {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fmt.Errorf("--console-socket: %w", err)
	}
	defer conn.Close()
	name := master.Name()
	if _, _, err := conn.WriteMsgUnix([]byte(name), unix.UnixRights(int(master.Fd())), nil); err != nil {
		return fmt.Errorf("--console-socket %s: send the terminal: %w", path, err)
	}
	return nil
}

// setupPty gives the terminal the process's size (process.consoleSize)
// and its user as owner, as runc does for the pty it makes.
func setupPty(slave *os.File, p *specs.Process) error {
	if b := p.ConsoleSize; b != nil {
		if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(b.Height), Col: uint16(b.Width)}); err != nil {
			return os.NewSyscallError("ioctl(TIOCSWINSZ)", err)
		}
	}
	if err := slave.Chown(int(p.User.UID), -1); err != nil {
		return fmt.Errorf("give the terminal to the container's user: %w", err)
	}
	return nil
}
