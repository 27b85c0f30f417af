package systemdtest

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"reconciled.dev/reconciled/internal/proc"
	"reconciled.dev/reconciled/internal/testutil"
)

//go:embed sandbox.sh
var sandboxScript string

//go:embed sandbox.target
var sandboxTarget string

// InsideEnv is set, to the sandbox's name, in a test binary that Run
// started inside a sandbox.
const InsideEnv = "RECONCILED_SYSTEMDTEST_INSIDE"

// SystemdPath is the systemd binary the sandbox runs.
const SystemdPath = "/lib/systemd/systemd"

// readyTimeout bounds the wait for a started systemd to answer.
const readyTimeout = 20 * time.Second

// Sandbox is one running systemd in its own namespaces.
type Sandbox struct {
	// Name is the sandbox's cgroup name (derived from the test's name) in
	// every hierarchy.
	Name string
	// inside: this process runs in the sandbox (Current); Exec then runs
	// commands directly.
	inside bool

	// Outside only.
	pid    int                 // systemd, as the host sees it
	dirs   []string            // the sandbox cgroup in each hierarchy, on the host
	cmd    *exec.Cmd           // systemd's process
	waited chan struct{}       // closed when cmd.Wait returned
	out    *bytes.Buffer       // what the boot script and systemd wrote
	outMu  *sync.Mutex         // guards out
	host   map[string]struct{} // entries of the host's /sys/fs/cgroup before the start
	marker string              // a file in the host's /tmp that must survive
}

// Inside reports whether this process runs inside a sandbox (started by
// Run).
func Inside() bool { return os.Getenv(InsideEnv) != "" }

// Current returns the sandbox this process runs in. It fails t when the
// process is not inside one.
func Current(t testing.TB) *Sandbox {
	t.Helper()
	name := os.Getenv(InsideEnv)
	if name == "" {
		t.Fatalf("systemdtest.Current: not inside a sandbox (%s is not set); call Reexec first", InsideEnv)
	}
	return &Sandbox{Name: name, inside: true}
}

// Reexec starts a sandbox, runs the current test inside it (Run) and
// returns true: the caller returns at once. Inside the sandbox it returns
// false and the test goes on there.
func Reexec(t *testing.T) bool {
	t.Helper()
	if Inside() {
		return false
	}
	Start(t).Run(t)
	return true
}

// Start starts systemd in a new sandbox named after t and waits until it
// answers. t.Cleanup stops it and removes its cgroups. It skips (fails
// under RECONCILED_REQUIRE_ROOT=1) without root, systemd, unshare or
// nsenter, and on a cgroup v2-only host.
func Start(t testing.TB) *Sandbox {
	t.Helper()
	testutil.RequireRoot(t)
	if Inside() {
		t.Fatalf("systemdtest.Start inside sandbox %s: nested sandboxes are not supported", os.Getenv(InsideEnv))
	}
	if _, err := os.Stat(SystemdPath); err != nil {
		testutil.SkipOrFail(t, "systemd is not installed (%v); apt-get install systemd", err)
	}
	for _, tool := range []string{"unshare", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipOrFail(t, "%s is not installed (%v); apt-get install util-linux", tool, err)
		}
	}
	hs, err := hostHierarchies()
	if err != nil {
		t.Fatalf("systemdtest: %v", err)
	}
	if err := checkCgroupfsWritable(); err != nil {
		t.Fatalf("systemdtest: before starting: %v", err)
	}
	var v1, links []string
	v2 := ""
	for _, h := range hs.mounts {
		if h.v2 {
			v2 = h.base
			continue
		}
		v1 = append(v1, h.base+"="+h.opts)
	}
	if len(v1) == 0 {
		testutil.SkipOrFail(t, "no cgroup v1 hierarchy under /sys/fs/cgroup (a cgroup v2-only host?): the sandbox needs a tmpfs /sys/fs/cgroup with v1 hierarchies; on such a host use the host's systemd")
	}
	for l, target := range hs.links {
		links = append(links, l+"="+target)
	}
	sort.Strings(links)

	s := &Sandbox{Name: sandboxName(t), out: &bytes.Buffer{}, outMu: &sync.Mutex{}, waited: make(chan struct{})}
	s.host = hostEntries()
	marker, err := os.CreateTemp("", "systemdtest-marker-"+s.Name+"-")
	if err != nil {
		t.Fatalf("systemdtest: creating the /tmp marker: %v", err)
	}
	marker.Close()
	s.marker = marker.Name()
	t.Cleanup(func() { s.stop(t) })

	for _, h := range hs.mounts {
		dir := filepath.Join(h.current, s.Name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("systemdtest: creating cgroup %s: %v", dir, err)
		}
		s.dirs = append(s.dirs, dir)
		if h.has("cpuset") {
			// An empty v1 cpuset admits no process.
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join(h.current, f))
				if err == nil {
					err = os.WriteFile(filepath.Join(dir, f), v, 0)
				}
				if err != nil {
					t.Fatalf("systemdtest: preparing cpuset %s: %v", dir, err)
				}
			}
		}
	}

	cmd := exec.Command("/bin/sh", append([]string{"-c", sandboxScript, "sh", "enter"}, s.dirs...)...)
	cmd.Env = []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"SYSTEMDTEST_SCRIPT=" + sandboxScript,
		"SYSTEMDTEST_V1=" + strings.Join(v1, " "),
		"SYSTEMDTEST_LINKS=" + strings.Join(links, " "),
		"SYSTEMDTEST_V2=" + v2,
		"SYSTEMDTEST_TARGET=" + sandboxTarget,
		"SYSTEMDTEST_SYSTEMD=" + SystemdPath,
	}
	cmd.Stdout = lockedWriter{s.outMu, s.out}
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
		// If the test binary dies, so does systemd, and with it every
		// process of its PID namespace.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("systemdtest: starting sandbox %s: %v", s.Name, err)
	}
	s.cmd, s.pid = cmd, cmd.Process.Pid
	go func() {
		cmd.Wait()
		close(s.waited)
	}()
	if err := s.waitReady(); err != nil {
		t.Fatalf("systemdtest: sandbox %s: %v\nboot output:\n%s", s.Name, err, s.output())
	}
	t.Logf("systemdtest: sandbox %s: systemd is host PID %d", s.Name, s.pid)
	return s
}

// waitReady polls `systemctl is-system-running` inside until it says
// running or degraded.
func (s *Sandbox) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	var last string
	for {
		select {
		case <-s.waited:
			return fmt.Errorf("systemd exited during boot: %v", s.cmd.ProcessState)
		default:
		}
		out, _ := s.Exec(ctx, "systemctl", "is-system-running")
		last = strings.TrimSpace(string(out))
		if last == "running" || last == "degraded" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("systemd did not become ready within %s (systemctl is-system-running: %q)", readyTimeout, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// PID is systemd's PID as the host sees it (0 inside the sandbox).
func (s *Sandbox) PID() int { return s.pid }

// Exec runs a command inside the sandbox, in its namespaces and cgroup
// tree, and returns its combined output. Inside the sandbox it simply runs
// the command.
func (s *Sandbox) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	return s.Command(ctx, name, args...).CombinedOutput()
}

// Command returns the command that runs name inside the sandbox (see
// Exec), for a caller that wants its pipes or its process.
func (s *Sandbox) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if s.inside {
		return exec.CommandContext(ctx, name, args...)
	}
	return s.enter(ctx, "", append([]string{name}, args...))
}

// enter builds the command that moves itself into the sandbox's cgroup in
// every hierarchy, then execs nsenter into systemd's namespaces to run
// argv (with working directory wd when not "").
func (s *Sandbox) enter(ctx context.Context, wd string, argv []string) *exec.Cmd {
	const script = `for d in $SYSTEMDTEST_DIRS; do echo $$ >"$d/cgroup.procs"; done; exec "$@"`
	nsenter := []string{"nsenter", "-t", strconv.Itoa(s.pid), "-m", "-p", "-C", "-u", "-i"}
	if wd != "" {
		nsenter = append(nsenter, "--wd="+wd)
	}
	full := append(append([]string{"-c", script, "sh"}, nsenter...), "--")
	cmd := exec.CommandContext(ctx, "/bin/sh", append(full, argv...)...)
	cmd.Env = append(os.Environ(), "SYSTEMDTEST_DIRS="+strings.Join(s.dirs, " "))
	return cmd
}

// Run re-runs the current test binary inside the sandbox with -test.run
// selecting exactly t (subtests included), logs its output and fails t
// when it fails. The re-run has InsideEnv set, its working directory is
// this process's, and /tmp is the sandbox's own. The binary is a copy in
// the sandbox's /run (os.Args[0] there).
func (s *Sandbox) Run(t *testing.T) {
	t.Helper()
	if s.inside {
		t.Fatal("systemdtest: Run inside the sandbox")
	}
	// The binary lives in the host's /tmp, which the sandbox hides: it is
	// copied to the sandbox's /run, where os.Args[0] of the re-run names
	// it (a test that re-executes itself finds it there).
	bin := "/run/systemdtest/bin/" + filepath.Base(os.Args[0])
	if err := copyFile("/proc/self/exe", filepath.Join("/proc", strconv.Itoa(s.pid), "root", bin)); err != nil {
		t.Fatalf("systemdtest: copying the test binary into sandbox %s: %v", s.Name, err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{bin, "-test.run=" + runPattern(t.Name()), "-test.count=1", "-test.v=true"}
	ctx := context.Background()
	if dl, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-5*time.Second))
		defer cancel()
		args = append(args, "-test.timeout="+time.Until(dl).Round(time.Second).String())
	}
	cmd := s.enter(ctx, wd, args)
	cmd.Env = append(cmd.Env, InsideEnv+"="+s.Name)
	out, err := cmd.CombinedOutput()
	t.Logf("in sandbox %s:\n%s", s.Name, indent(out))
	switch {
	case err != nil:
		t.Errorf("test %s failed inside sandbox %s: %v", t.Name(), s.Name, err)
	case bytes.Contains(out, []byte("testing: warning: no tests to run")):
		t.Errorf("test %s did not run inside sandbox %s (pattern %q matched nothing)", t.Name(), s.Name, runPattern(t.Name()))
	case bytes.Contains(out, []byte("--- SKIP: "+t.Name()+" ")):
		t.Skipf("skipped inside sandbox %s", s.Name)
	}
}

// CopyIn copies the host file src to dst inside the sandbox (made with its
// directory, mode 0755). Inside the sandbox the host's /tmp is hidden, and
// so is a source tree checked out under it: build what the inner test
// needs outside and copy it in.
func (s *Sandbox) CopyIn(src, dst string) error {
	if s.inside {
		return errors.New("systemdtest: CopyIn inside the sandbox")
	}
	return copyFile(src, filepath.Join("/proc", strconv.Itoa(s.pid), "root", dst))
}

// copyFile copies src to dst (made with its directory, mode 0755).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// runPattern is the -test.run value that selects exactly the test named
// name ("TestA/sub").
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

func indent(b []byte) string {
	return "\t" + strings.ReplaceAll(strings.TrimRight(string(b), "\n"), "\n", "\n\t")
}

// Dirs are the sandbox's cgroup directories on the host, one per
// hierarchy: systemd's cgroup root.
func (s *Sandbox) Dirs() []string { return append([]string(nil), s.dirs...) }

func (s *Sandbox) output() string {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	return s.out.String()
}

// stop kills everything in the sandbox, removes its cgroups and checks
// that the host was left alone.
func (s *Sandbox) stop(t testing.TB) {
	t.Helper()
	var errs []error
	// v1-frozen tasks do not die of SIGKILL until thawed.
	for _, d := range s.dirs {
		if err := thawTree(d); err != nil {
			errs = append(errs, err)
		}
	}
	if s.cmd != nil {
		if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("killing systemd (pid %d): %w", s.pid, err))
		}
		select {
		case <-s.waited:
		case <-time.After(10 * time.Second):
			errs = append(errs, fmt.Errorf("systemd (pid %d) did not exit within 10s of SIGKILL", s.pid))
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := s.procs()
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			errs = append(errs, fmt.Errorf("processes %v still in sandbox %s after 10s", pids, s.Name))
			break
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
				errs = append(errs, fmt.Errorf("killing pid %d of sandbox %s: %w", pid, s.Name, err))
			}
		}
		for _, d := range s.dirs {
			thawTree(d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, d := range s.dirs {
		if err := removeTree(d, deadline); err != nil {
			errs = append(errs, err)
		}
	}
	if s.marker != "" {
		if _, err := os.Stat(s.marker); err != nil {
			errs = append(errs, fmt.Errorf("HOST /tmp WAS CHANGED: marker %s is gone (%v): systemd-tmpfiles or similar ran on the host's /tmp", s.marker, err))
		} else if err := os.Remove(s.marker); err != nil {
			errs = append(errs, err)
		}
	}
	if err := checkCgroupfsWritable(); err != nil {
		errs = append(errs, fmt.Errorf("HOST CGROUP MOUNT CHANGED (remount nothing by hand; tell a person): %w", err))
	}
	if s.host != nil {
		for e := range hostEntries() {
			if _, ok := s.host[e]; !ok {
				errs = append(errs, fmt.Errorf("HOST CHANGED: new entry /sys/fs/cgroup/%s appeared while sandbox %s ran", e, s.Name))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Errorf("systemdtest: stopping sandbox %s: %v\nboot output:\n%s", s.Name, err, s.output())
	}
}

// procs lists the host PIDs in the sandbox's cgroups, every hierarchy.
func (s *Sandbox) procs() []int {
	seen := map[int]bool{}
	var pids []int
	for _, d := range s.dirs {
		filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() || e.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 0 && !seen[pid] {
					seen[pid] = true
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

// thawTree writes THAWED to every frozen freezer.state under dir.
func thawTree(dir string) error {
	var errs []error
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() || e.Name() != "freezer.state" {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) != "THAWED" {
			if err := os.WriteFile(p, []byte("THAWED"), 0); err != nil {
				errs = append(errs, fmt.Errorf("thawing %s: %w", p, err))
			}
		}
		return nil
	})
	return errors.Join(errs...)
}

// removeTree rmdirs dir and the directories under it, deepest first, never
// crossing into anything but cgroup directories (rmdir alone). EBUSY is
// retried until deadline.
func removeTree(dir string, deadline time.Time) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name()), deadline); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for {
		err := syscall.Rmdir(dir)
		if err == nil || err == syscall.ENOENT {
			return nil
		}
		if err != syscall.EBUSY || time.Now().After(deadline) {
			return fmt.Errorf("removing cgroup %s: %w", dir, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sandboxName is "<test name>-<6 hex digits>": traceable to the test,
// unique across runs.
func sandboxName(t testing.TB) string {
	b := make([]byte, 3)
	rand.Read(b)
	return "systemdtest-" + testutil.Name(t, 40) + "-" + hex.EncodeToString(b)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// hierarchy is one cgroup hierarchy mounted under /sys/fs/cgroup on the
// host.
type hierarchy struct {
	base    string // the mount point's name under /sys/fs/cgroup ("memory", "unified")
	opts    string // the v1 controllers and name= options ("cpu,cpuacct", "none,name=systemd")
	names   []string
	v2      bool
	current string // this process's cgroup in it, on the host
}

func (h hierarchy) has(c string) bool {
	for _, n := range h.names {
		if n == c {
			return true
		}
	}
	return false
}

type hostLayout struct {
	mounts []hierarchy
	links  map[string]string // symlinks in /sys/fs/cgroup pointing at a mount ("cpu" -> "cpu,cpuacct")
}

// hostHierarchies reads the cgroup mounts directly under /sys/fs/cgroup and
// this process's cgroup in each.
func hostHierarchies() (hostLayout, error) {
	own, err := ownCgroups()
	if err != nil {
		return hostLayout{}, err
	}
	ms, err := proc.Mounts(func(m *proc.Mount) bool { return filepath.Dir(m.Mountpoint) == "/sys/fs/cgroup" })
	if err != nil {
		return hostLayout{}, err
	}
	var l hostLayout
	for _, m := range ms {
		root, point, fstype := m.Root, m.Mountpoint, m.FSType
		h := hierarchy{base: filepath.Base(point)}
		key := ""
		switch fstype {
		case "cgroup2":
			h.v2 = true
		case "cgroup":
			var opts []string
			for _, o := range strings.Split(m.VFSOptions, ",") {
				if o == "rw" || o == "ro" || strings.Contains(o, "=") && !strings.HasPrefix(o, "name=") {
					continue
				}
				if o == "xattr" || o == "noprefix" || o == "clone_children" || o == "cpuset_v2_mode" || o == "favordynmods" {
					continue
				}
				opts = append(opts, o)
				h.names = append(h.names, o)
			}
			sort.Strings(h.names)
			key = strings.Join(h.names, ",")
			if len(opts) == 1 && strings.HasPrefix(opts[0], "name=") {
				opts = append([]string{"none"}, opts...)
			}
			h.opts = strings.Join(opts, ",")
		default:
			continue
		}
		cg, ok := own[key]
		if !ok {
			return hostLayout{}, fmt.Errorf("no line for hierarchy %q (mounted at %s) in /proc/self/cgroup", key, point)
		}
		rel, err := filepath.Rel(root, cg)
		if err != nil || strings.HasPrefix(rel, "..") {
			return hostLayout{}, fmt.Errorf("this process's cgroup %s is outside the mount of %s (root %s)", cg, point, root)
		}
		h.current = filepath.Join(point, rel)
		l.mounts = append(l.mounts, h)
	}
	l.links = map[string]string{}
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		if e.Type()&os.ModeSymlink == 0 {
			continue
		}
		if target, err := os.Readlink(filepath.Join("/sys/fs/cgroup", e.Name())); err == nil && !strings.Contains(target, "/") {
			l.links[e.Name()] = target
		}
	}
	return l, nil
}

// ownCgroups maps each hierarchy ("cpu,cpuacct" sorted, "name=systemd", ""
// for cgroup2) to this process's cgroup in it.
func ownCgroups() (map[string]string, error) {
	cgs, err := proc.Cgroups(0)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(cgs))
	for ctrls, path := range cgs {
		names := strings.Split(ctrls, ",")
		sort.Strings(names)
		m[strings.Join(names, ",")] = path
	}
	return m, nil
}

// checkCgroupfsWritable fails when the host's /sys/fs/cgroup (or a mount
// on it) is mounted read-only: what an uncontained systemd does.
func checkCgroupfsWritable() error {
	ms, err := proc.Mounts(func(m *proc.Mount) bool { return m.Mountpoint == "/sys/fs/cgroup" })
	if err != nil {
		return err
	}
	ro := func(opts string) bool { return opts == "ro" || strings.HasPrefix(opts, "ro,") }
	for _, m := range ms {
		if ro(m.Options) || ro(m.VFSOptions) {
			return fmt.Errorf("/sys/fs/cgroup is mounted read-only on the host: %+v", m)
		}
	}
	return nil
}

// hostEntries lists /sys/fs/cgroup on the host.
func hostEntries() map[string]struct{} {
	m := map[string]struct{}{}
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		m[e.Name()] = struct{}{}
	}
	return m
}
