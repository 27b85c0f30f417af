//go:build linux

package rootfs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/proc"
	"reconciled.dev/reconciled/internal/testutil"
)

// The tests run Setup in a child: the test binary re-executed with
// childEnv set, in new mount, pid, uts, ipc and net namespaces, as the
// executor's container-init stage is. The child reads the spec, calls
// Setup (or Prepare and Finalize), then execs spec.Process.Args inside the
// new root. Its mount namespace dies with it.
const (
	childEnv       = "ROOTFS_TEST_CHILD"
	childSpecEnv   = "ROOTFS_TEST_SPEC"
	childBundleEnv = "ROOTFS_TEST_BUNDLE"
	childLegacyEnv = "ROOTFS_TEST_LEGACY" // "1": use mount(2) and the component walk
	childCwdEnv    = "ROOTFS_TEST_CWD"    // when set, Chdir to it after Setup
	// childFakeV2Env "1": before Setup, mount a cgroup2 on /sys/fs/cgroup in
	// the child's mount namespace, a fake unified host on a v1 or hybrid
	// machine.
	childFakeV2Env = "ROOTFS_TEST_FAKE_CGROUP2"
	// childNoMknodEnv "1": drop CAP_MKNOD from this (locked) thread before
	// Setup, so that mknod fails with EPERM as it does in a user namespace.
	childNoMknodEnv = "ROOTFS_TEST_NO_MKNOD"
	setupFailed     = 111
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		childMain()
		return
	}
	os.Exit(m.Run())
}

func childMain() {
	runtime.LockOSThread()
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "child: "+format+"\n", args...)
		os.Exit(setupFailed)
	}
	data, err := os.ReadFile(os.Getenv(childSpecEnv))
	if err != nil {
		fail("%v", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		fail("%v", err)
	}
	if os.Getenv(childLegacyEnv) == "1" {
		legacyMountAPI, noMountSetattr, noOpenat2 = true, true, true
	}
	if os.Getenv(childFakeV2Env) == "1" {
		// rslave first, so that nothing can propagate to the host.
		if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
			fail("fake cgroup2: %v", err)
		}
		if err := unix.Mount("cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			fail("fake cgroup2: %v", err)
		}
	}
	if os.Getenv(childNoMknodEnv) == "1" {
		if err := dropCap(unix.CAP_MKNOD); err != nil {
			fail("drop CAP_MKNOD: %v", err)
		}
	}
	before := openFds()
	if err := Setup(&spec, os.Getenv(childBundleEnv)); err != nil {
		fail("setup: %v", err)
	}
	// Setup must not leave a file descriptor behind (it would reach the
	// container process if the caller forgot O_CLOEXEC somewhere).
	for fd := range openFds() {
		if !before[fd] {
			target, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
			fail("Setup leaked fd %d (%s)", fd, target)
		}
	}
	if cwd := os.Getenv(childCwdEnv); cwd != "" {
		if err := Chdir(cwd); err != nil {
			fail("%v", err)
		}
	}
	args := spec.Process.Args
	if err := unix.Exec(args[0], args, []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin"}); err != nil {
		fail("exec %v: %v", args, err)
	}
}

// dropCap removes capability c from the calling thread's effective set.
func dropCap(c int) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	data[c/32].Effective &^= 1 << (uint(c) % 32)
	return unix.Capset(&hdr, &data[0])
}

// openFds lists this process's open file descriptors.
func openFds() map[int]bool {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil
	}
	fds := map[int]bool{}
	for _, n := range names {
		var fd int
		if _, err := fmt.Sscan(n, &fd); err == nil && uintptr(fd) != d.Fd() {
			fds[fd] = true
		}
	}
	return fds
}

// container is one test container: a busybox rootfs in a bundle and the
// spec the child will get.
type container struct {
	t       *testing.T
	bundle  string
	rootfs  string
	spec    *specs.Spec
	legacy  bool
	cwd     string
	fakeV2  bool
	noMknod bool
	extra   uintptr // more clone flags
}

// newContainer makes a busybox bundle with a spec like `runc spec`'s.
func newContainer(t *testing.T) *container {
	t.Helper()
	testutil.RequireRoot(t)
	rootfs := testutil.BusyboxRootfs(t)
	checkNoLeakedMounts(t, filepath.Dir(filepath.Dir(rootfs)))
	return &container{t: t, bundle: filepath.Dir(rootfs), rootfs: rootfs, spec: defaultSpec()}
}

func defaultSpec() *specs.Spec {
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{Args: []string{"/bin/true"}},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			MaskedPaths: []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// run execs script with /bin/sh -c in the container and returns its
// combined output; it fails the test unless the exit status is wantRC
// (setupFailed for a Setup that must fail).
func (c *container) run(script string, wantRC int) string {
	c.t.Helper()
	c.spec.Process.Args = []string{"/bin/sh", "-c", script}
	data, err := json.MarshalIndent(c.spec, "", "  ")
	if err != nil {
		c.t.Fatal(err)
	}
	specPath := filepath.Join(c.bundle, "config.json")
	if err := os.WriteFile(specPath, data, 0o644); err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=1", childSpecEnv+"="+specPath, childBundleEnv+"="+c.bundle)
	if c.legacy {
		cmd.Env = append(cmd.Env, childLegacyEnv+"=1")
	}
	if c.noMknod {
		cmd.Env = append(cmd.Env, childNoMknodEnv+"=1")
	}
	if c.fakeV2 {
		cmd.Env = append(cmd.Env, childFakeV2Env+"=1")
	}
	if c.cwd != "" {
		cmd.Env = append(cmd.Env, childCwdEnv+"="+c.cwd)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS |
			syscall.CLONE_NEWIPC | syscall.CLONE_NEWNET | c.extra,
		Pdeathsig: syscall.SIGKILL,
	}
	out, err := cmd.CombinedOutput()
	rc := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			c.t.Fatalf("run %q: %v\n%s", script, err, out)
		}
		rc = ee.ExitCode()
	}
	if rc != wantRC {
		c.t.Fatalf("run %q: exit status %d, want %d; output:\n%s", script, rc, wantRC, out)
	}
	return string(out)
}

// checkNoLeakedMounts fails the test, at cleanup, if the host's mount table
// has anything under dir: everything must have happened in the child's
// mount namespace.
func checkNoLeakedMounts(t *testing.T, dir string) {
	t.Cleanup(func() {
		ms, err := proc.Mounts(func(m *proc.Mount) bool { return isUnder(m.Mountpoint, dir) })
		if err != nil {
			t.Error(err)
		}
		for _, m := range ms {
			t.Errorf("host mount table has %s, under the test's directory %s", m.Mountpoint, dir)
		}
	})
}

// mountsIn parses the mountinfo text a container printed (among other
// lines) and returns the entries by mount point (the last one wins, as the
// kernel shows it).
func mountsIn(t *testing.T, text string) map[string]mountinfoEntry {
	t.Helper()
	out := map[string]mountinfoEntry{}
	for _, line := range strings.Split(text, "\n") {
		m, err := proc.ParseMountinfoLine(line)
		if err != nil {
			continue
		}
		out[m.Mountpoint] = mountinfoEntry{root: m.Root, mountpoint: m.Mountpoint, shared: m.Shared(), fstype: m.FSType, options: m.Options}
	}
	return out
}

type mountinfoEntry struct {
	root, mountpoint string
	shared           bool
	fstype           string
	options          string // per-mount options: "ro,nosuid,nodev,relatime"
}

func (e mountinfoEntry) has(opt string) bool {
	for _, o := range strings.Split(e.options, ",") {
		if o == opt {
			return true
		}
	}
	return false
}
