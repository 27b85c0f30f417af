package main

import (
	"fmt"
	"net"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

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

// setConsoleSize gives the terminal the process's size
// (process.consoleSize), as runc does.
func setConsoleSize(master *os.File, b *specs.Box) error {
	if b == nil {
		return nil
	}
	if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(b.Height), Col: uint16(b.Width)}); err != nil {
		return os.NewSyscallError("ioctl(TIOCSWINSZ)", err)
	}
	return nil
}
