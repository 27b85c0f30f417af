package test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/testutil"
)

// podman drives a real podman (Debian's podman 4.3) with reconciled as its
// OCI runtime, through a symlink named reconciled-runc, as an operator
// would with `podman --runtime /usr/local/bin/reconciled-runc`. Its
// storage, run and tmp directories are the test's own (vfs: plain
// directories), so that nothing is shared with the host's podman or with
// another test run.
type podman struct {
	t      *testing.T
	global []string
	ulimit []string
}

func newPodman(t *testing.T) *podman {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "podman")
	link := filepath.Join(t.TempDir(), "reconciled-runc")
	if err := os.Symlink(reconciledBin(t), link); err != nil {
		t.Fatal(err)
	}
	// podman refuses a run root longer than 50 characters: a short
	// directory of the test's own, not t.TempDir().
	dir, err := os.MkdirTemp("", "rcd-podman-")
	if err != nil {
		t.Fatal(err)
	}
	p := &podman{t: t, global: []string{
		"--root", filepath.Join(dir, "storage"), "--runroot", filepath.Join(dir, "run"),
		"--tmpdir", filepath.Join(dir, "tmp"), "--storage-driver", "vfs",
		"--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", link,
	}}
	// podman asks for RLIMIT_NOFILE and RLIMIT_NPROC of 1048576 (its
	// default), which no runtime can set without CAP_SYS_RESOURCE (runc
	// and crun fail the same way): where the test lacks it, it asks for
	// what it holds (podman's own process keeps RLIMIT_NPROC at most
	// 32768).
	if !hasCap(t, unix.CAP_SYS_RESOURCE) {
		var nofile, nproc unix.Rlimit
		unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile)
		unix.Getrlimit(unix.RLIMIT_NPROC, &nproc)
		n := min(nproc.Max, 32768)
		p.ulimit = []string{"--ulimit", "nofile=" + strconv.FormatUint(nofile.Max, 10) + ":" + strconv.FormatUint(nofile.Max, 10),
			"--ulimit", "nproc=" + strconv.FormatUint(n, 10) + ":" + strconv.FormatUint(n, 10)}
	}
	t.Cleanup(func() {
		p.run("rm", "--all", "--force")
		// Whatever podman left mounted under its directories (a
		// container's /dev/shm when a test failed half way), then the
		// directories, once nothing is mounted there.
		if unmountUnder(t, dir) {
			os.RemoveAll(dir)
		}
	})
	return p
}

// hasCap says whether the test process has capability c in its effective set.
func hasCap(t *testing.T, c int) bool {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && n&(1<<c) != 0
		}
	}
	return false
}

// unmountUnder detaches every mount below dir, deepest first, and says
// whether that left none.
func unmountUnder(t *testing.T, dir string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return false
	}
	defer f.Close()
	var under []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fs := strings.Fields(s.Text()); len(fs) > 4 && strings.HasPrefix(fs[4], dir+"/") {
			under = append(under, fs[4])
		}
	}
	slices.SortFunc(under, func(a, b string) int { return len(b) - len(a) })
	ok := true
	for _, m := range under {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", m, err)
			ok = false
		}
	}
	return ok
}

// run runs podman ARGS and returns its stdout, stderr and exit code.
func (p *podman) run(args ...string) result {
	p.t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("podman", append(slices.Clone(p.global), args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		p.t.Fatalf("podman %v: %v", args, err)
	}
	return result{stdout.String(), stderr.String(), code}
}

// container runs `podman run ARGS` with the test's limits and no network.
func (p *podman) container(args ...string) result {
	p.t.Helper()
	return p.run(append(append([]string{"run", "--network", "none"}, p.ulimit...), args...)...)
}

// podman runs containers with reconciled-runc as its runtime, from a root
// filesystem and from an image loaded from an oci-archive that
// `reconciled image export` wrote: their output and exit codes come back
// (conmon reaps the container's process: the runtime leaves it to the
// caller, as runc does), and a detached container's process is conmon's
// child, takes `podman exec`, and `podman stop` ends it.
func TestPodmanWithReconciledRunc(t *testing.T) {
	p := newPodman(t)
	rootfs := testutil.BusyboxRootfs(t)

	res := p.container("--rm", "--rootfs", rootfs, "/bin/sh", "-c", "echo from-rootfs; exit 3")
	if res.code != 3 || strings.TrimSpace(res.stdout) != "from-rootfs" {
		t.Fatalf("podman run --rootfs: exit %d, stdout %q, stderr %q; want 3 and from-rootfs", res.code, res.stdout, res.stderr)
	}

	// The README's offline image, through our store, as an oci-archive.
	dir := t.TempDir()
	build := exec.Command("bash", "../examples/images/busybox-image.sh", filepath.Join(dir, "oci"))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("busybox-image.sh: %v\n%s", err, out)
	}
	const ref = "example.local/busybox:1"
	archive := filepath.Join(dir, "busybox.tar")
	store := filepath.Join(dir, "store")
	for _, args := range [][]string{
		{"image", "import", "--image-root", store, "--name", ref, filepath.Join(dir, "oci")},
		{"image", "export", "--image-root", store, ref, archive},
	} {
		if out, err := exec.Command(reconciledBin(t), args...).CombinedOutput(); err != nil {
			t.Fatalf("reconciled %v: %v\n%s", args, err, out)
		}
	}
	if res := p.run("load", "-i", archive); res.code != 0 || !strings.Contains(res.stdout+res.stderr, "Loaded image: "+ref) {
		t.Fatalf("podman load: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	res = p.container("--rm", ref, "/bin/sh", "-c", "echo from-image $(id -u); exit 5")
	if res.code != 5 || strings.TrimSpace(res.stdout) != "from-image 0" {
		t.Fatalf("podman run %s: exit %d, stdout %q, stderr %q; want 5 and from-image 0", ref, res.code, res.stdout, res.stderr)
	}

	res = p.container("-d", ref, "sleep", "1000")
	if res.code != 0 {
		t.Fatalf("podman run -d: exit %d\n%s", res.code, res.stderr)
	}
	id := strings.TrimSpace(res.stdout)
	res = p.run("inspect", "--format", "{{.State.Pid}}", id)
	pid, err := strconv.Atoi(strings.TrimSpace(res.stdout))
	if err != nil || pid <= 0 {
		t.Fatalf("podman inspect: %q %q", res.stdout, res.stderr)
	}
	ppid := statusField(t, readFile(t, "/proc/"+strconv.Itoa(pid)+"/status"), "PPid")
	if comm := strings.TrimSpace(readFile(t, "/proc/"+ppid+"/comm")); comm != "conmon" {
		t.Errorf("the container's process %d has parent %s (%s), want conmon: the engine must be able to reap it", pid, ppid, comm)
	}
	if res := p.run("exec", id, "sh", "-c", "echo exec $(id -u)"); res.code != 0 || strings.TrimSpace(res.stdout) != "exec 0" {
		t.Errorf("podman exec: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	if res := p.run("stop", "-t", "1", id); res.code != 0 {
		t.Fatalf("podman stop: exit %d\n%s", res.code, res.stderr)
	}
	// sleep as PID 1 ignores SIGTERM: podman kills it after 1 s.
	if res := p.run("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", id); strings.TrimSpace(res.stdout) != "exited 137" {
		t.Errorf("after podman stop: %q %q, want exited 137", res.stdout, res.stderr)
	}
	if alive(pid) {
		t.Errorf("the container's process %d is still there after podman stop", pid)
	}
	if res := p.run("rm", id); res.code != 0 {
		t.Errorf("podman rm: exit %d\n%s", res.code, res.stderr)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
