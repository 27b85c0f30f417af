package sys

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpenat2StaysInRoot(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	_, err = Openat2(root, "link", &unix.OpenHow{Flags: unix.O_RDONLY, Resolve: unix.RESOLVE_IN_ROOT})
	var pe *os.PathError
	if !errors.As(err, &pe) || pe.Path != "link" || !errors.Is(err, unix.ENOENT) {
		t.Errorf("an absolute symlink out of the root must resolve inside it (ENOENT): %v", err)
	}
	fd, err := Openat(root, ".", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	flags, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	unix.Close(fd)
	if flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("Openat must set O_CLOEXEC")
	}
}

func TestTypeName(t *testing.T) {
	for mode, want := range map[uint32]string{unix.S_IFDIR | 0o755: "directory", unix.S_IFLNK: "symlink", unix.S_IFCHR: "character device", 0o170000: "file of type 0170000"} {
		if got := TypeName(mode); got != want {
			t.Errorf("TypeName(%#o) = %q, want %q", mode, got, want)
		}
	}
}

func TestSysctlNamespace(t *testing.T) {
	for key, want := range map[string]string{
		"net.ipv4.ping_group_range": NamespaceNetwork, "net.core.somaxconn": NamespaceNetwork,
		"fs.mqueue.queues_max": NamespaceIPC, "kernel.shmmax": NamespaceIPC, "kernel.sem": NamespaceIPC,
		"kernel.domainname": NamespaceUTS,
	} {
		if got, err := SysctlNamespace(key); err != nil || got != want {
			t.Errorf("SysctlNamespace(%q) = %q, %v; want %q", key, got, err, want)
		}
	}
	for _, key := range []string{"kernel.hostname", "vm.swappiness", "kernel.pid_max", "fs.file-max", "", "net/ipv4/ip_forward", "net..x"} {
		if ns, err := SysctlNamespace(key); err == nil {
			t.Errorf("SysctlNamespace(%q) = %q, want an error", key, ns)
		}
	}
}

func TestOpenPathDoesNotFollow(t *testing.T) {
	dir := t.TempDir()
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	fd, st, err := OpenPath(dfd, "link")
	if err != nil {
		t.Fatal(err)
	}
	CloseFd(fd)
	if got := TypeName(st.Mode); got != "symlink" {
		t.Errorf("OpenPath of a symlink stats a %s, want the symlink itself", got)
	}
	fd, _, err = OpenPath(dfd, "missing")
	if fd != -1 || !errors.Is(err, unix.ENOENT) {
		t.Errorf("OpenPath of a missing name: fd %d, err %v; want -1 and ENOENT", fd, err)
	}
}
