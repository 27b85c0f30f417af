package test

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/internal/testutil"
)

// runcCLI drives the binary through a symlink named reconciled-runc, in
// runc's bare form: `reconciled-runc --root R ARGS...`, run in dir.
type runcCLI struct {
	t         *testing.T
	bin, root string
}

func newRuncCLI(t *testing.T) *runcCLI {
	t.Helper()
	testutil.RequireRoot(t)
	link := filepath.Join(t.TempDir(), "reconciled-runc")
	if err := os.Symlink(reconciledBin(t), link); err != nil {
		t.Fatal(err)
	}
	return &runcCLI{t: t, bin: link, root: filepath.Join(t.TempDir(), "state")}
}

func (c *runcCLI) runIn(dir string, args ...string) result {
	c.t.Helper()
	return c.runWith(dir, nil, args...)
}

// runWith is runIn with extra files as the command's fds 3, 4, ...
func (c *runcCLI) runWith(dir string, extra []*os.File, args ...string) result {
	c.t.Helper()
	tmp := c.t.TempDir()
	out, _ := os.Create(filepath.Join(tmp, "stdout"))
	errf, _ := os.Create(filepath.Join(tmp, "stderr"))
	defer out.Close()
	defer errf.Close()
	cmd := exec.Command(c.bin, append([]string{"--root", c.root}, args...)...)
	cmd.Dir, cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = dir, out, errf, extra
	err := cmd.Run()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("%v: %v", args, err)
	}
	o, _ := os.ReadFile(out.Name())
	e, _ := os.ReadFile(errf.Name())
	return result{string(o), string(e), code}
}

func (c *runcCLI) ok(dir string, args ...string) string {
	c.t.Helper()
	res := c.runIn(dir, args...)
	if res.code != 0 {
		c.t.Fatalf("reconciled-runc %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), res.code, res.stdout, res.stderr)
	}
	return res.stdout
}

func (c *runcCLI) cleanup(id string) {
	c.t.Cleanup(func() { c.runIn("/", "delete", "--force", id) })
}

// consoleSocket listens on a unix socket as runc's recvtty does and
// returns its path and a channel that gets the first terminal master
// sent to it.
func consoleSocket(t *testing.T) (string, <-chan *os.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "console.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan *os.File, 1)
	go func() {
		conn, err := l.AcceptUnix()
		if err != nil {
			return
		}
		defer conn.Close()
		buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			return
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			return
		}
		got <- os.NewFile(uintptr(fds[0]), "master")
	}()
	return path, got
}

// readUntil reads f until it has shown want, for 10s at most.
func readUntil(t *testing.T, f *os.File, want string) string {
	t.Helper()
	var seen strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for !strings.Contains(seen.String(), want) {
			n, err := f.Read(buf)
			seen.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		f.Close() // ends the reader
		<-done
		t.Fatalf("the terminal never showed %q; it showed %q", want, seen.String())
	}
	if !strings.Contains(seen.String(), want) {
		t.Fatalf("the terminal never showed %q; it showed %q", want, seen.String())
	}
	return seen.String()
}

// `spec` writes runc's default config, which runs unchanged: sh on a
// terminal whose master goes to --console-socket, through the
// reconciled-runc symlink with runc's global flags before the command.
func TestRuncSpecRunsWithConsoleSocket(t *testing.T) {
	c := newRuncCLI(t)
	rootfs := testutil.BusyboxRootfs(t)
	dir := filepath.Dir(rootfs)
	os.Remove(filepath.Join(dir, "config.json"))
	c.ok(dir, "spec")
	if res := c.runIn(dir, "spec"); res.code == 0 {
		t.Errorf("a second spec overwrote config.json")
	}
	s := readSpec(t, dir)
	if !s.Process.Terminal || strings.Join(s.Process.Args, " ") != "sh" || !s.Root.Readonly ||
		len(s.Process.Capabilities.Ambient) != 3 || len(s.Linux.MaskedPaths) == 0 {
		t.Fatalf("spec is not runc's default: %+v", s)
	}
	id := testutil.Name(t, 40)
	c.cleanup(id)
	if res := c.runIn(dir, "run", "-d", id); res.code == 0 || !strings.Contains(res.stderr, "--console-socket") {
		t.Errorf("run -d of a terminal container without --console-socket: exit %d, stderr %q; want an error naming --console-socket", res.code, res.stderr)
	}
	sock, masters := consoleSocket(t)
	logFile := filepath.Join(t.TempDir(), "log.json")
	c.ok(dir, "--log", logFile, "--log-format", "json", "--debug", "run", "-d", "--console-socket", sock, "--pid-file", filepath.Join(dir, "pid"), id)
	var master *os.File
	select {
	case master = <-masters:
	case <-time.After(10 * time.Second):
		t.Fatal("no terminal came over --console-socket")
	}
	defer master.Close()
	pid, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil || !alive(atoi(t, string(pid))) {
		t.Fatalf("--pid-file: %q, %v; want the running container's PID", pid, err)
	}
	if _, err := master.Write([]byte("[ -t 0 ] && [ -t 1 ] && echo on-a-terminal-$((6*7))\n")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, master, "on-a-terminal-42")
	var list []map[string]any
	if err := json.Unmarshal([]byte(c.ok(dir, "list", "--format", "json")), &list); err != nil || len(list) != 1 ||
		list[0]["id"] != id || list[0]["status"] != "running" {
		t.Errorf("list --format json: %v, %v", list, err)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}

// --version answers in runc's shape, features with the features JSON;
// --log and --log-format json put the runtime's errors in FILE, as runc
// does: level "error", the error as msg (what containerd's go-runc reads).
func TestRuncVersionFeaturesLog(t *testing.T) {
	c := newRuncCLI(t)
	lines := strings.Split(c.ok("/", "--version"), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "reconciled-runc version ") ||
		!strings.HasPrefix(lines[1], "commit: ") || lines[2] != "spec: "+specs.Version {
		t.Errorf("--version: %q", lines)
	}
	var f map[string]any
	if err := json.Unmarshal([]byte(c.ok("/", "features")), &f); err != nil || f["ociVersionMax"] != specs.Version {
		t.Errorf("features: %v, %v", f, err)
	}
	logFile := filepath.Join(t.TempDir(), "log")
	if res := c.runIn("/", "--log", logFile, "--log-format", "json", "start", "no-such-container"); res.code == 0 {
		t.Fatal("start of a missing container succeeded")
	}
	data, _ := os.ReadFile(logFile)
	var rec map[string]any
	if err := json.Unmarshal(data, &rec); err != nil || rec["level"] != "error" || !strings.Contains(rec["err"].(string), "no-such-container") ||
		!strings.Contains(rec["msg"].(string), "no-such-container") {
		t.Errorf("--log --log-format json: %q (%v); want a JSON error record naming the container, level \"error\" as runc (logrus) writes it", data, err)
	}
	if res := c.runIn("/", "--log-format", "xml", "list"); res.code == 0 {
		t.Errorf("--log-format xml was accepted")
	}
}

// list -q, ps --format json / table with ps(1) arguments, kill --all, run
// --keep, and the runtime form `reconciled runtime` taking the same.
func TestRuncListPsKillKeep(t *testing.T) {
	c := newRuncCLI(t)
	b := bundle(t, nil, "sleep", "300")
	id := testutil.Name(t, 40)
	c.cleanup(id)
	c.ok(b, "run", "-d", id)
	if got := c.ok("/", "list", "-q"); got != id+"\n" {
		t.Errorf("list -q: %q, want %q", got, id+"\n")
	}
	var pids []int
	if err := json.Unmarshal([]byte(c.ok("/", "ps", "--format", "json", id)), &pids); err != nil || len(pids) != 1 {
		t.Fatalf("ps --format json: %v %v", pids, err)
	}
	table := c.ok("/", "ps", id, "-o", "pid,comm")
	if ls := strings.Split(strings.TrimSpace(table), "\n"); len(ls) != 2 || !strings.Contains(ls[0], "PID") ||
		!strings.Contains(ls[1], strconv.Itoa(pids[0])) || !strings.Contains(ls[1], "sleep") {
		t.Errorf("ps ID -o pid,comm: %q; want ps(1)'s header and the container's sleep", table)
	}
	c.ok("/", "kill", "--all", id, "KILL")
	waitGone(t, pids[0])
	// As runc (kill.bats): --all on the stopped container signals what is
	// left, nothing, and succeeds; without --all it is refused.
	waitFor(t, "the container to stop", func() bool { return strings.Contains(c.ok("/", "state", id), `"stopped"`) })
	if res := c.runIn("/", "kill", "-a", id, "0"); res.code != 0 {
		t.Errorf("kill -a of a stopped container: exit %d, %q; want 0 as runc", res.code, res.stderr)
	}
	if res := c.runIn("/", "kill", id, "0"); res.code == 0 {
		t.Errorf("kill (no --all) of a stopped container succeeded; runc refuses it")
	}

	k := testutil.Name(t, 35) + "-keep"
	c.cleanup(k)
	kb := bundle(t, nil, "sh", "-c", "exit 3")
	if res := c.runIn(kb, "run", "--keep", k); res.code != 3 {
		t.Errorf("run --keep: exit %d (%q), want 3", res.code, res.stderr)
	}
	if out := c.ok("/", "state", k); !strings.Contains(out, `"stopped"`) {
		t.Errorf("after run --keep the container is not kept stopped: %s", out)
	}
}

// exec's runc flags: --cwd, --env, --user, --additional-gids, --cap,
// --no-new-privs, --pid-file, --detach, --process FILE; the exec'd
// process leads its own process group.
func TestRuncExecFlags(t *testing.T) {
	c := newRuncCLI(t)
	b := bundle(t, func(s *specs.Spec) { s.Root.Readonly = false }, "sleep", "300")
	id := testutil.Name(t, 40)
	c.cleanup(id)
	c.ok(b, "run", "-d", id)

	out := c.ok("/", "exec", "--cwd", "/tmp", "--env", "X=y", "--user", "1000:1000", "--additional-gids", "10",
		"--no-new-privs", id, "sh", "-c", `pwd; echo X=$X; id; grep NoNewPrivs /proc/self/status; cut -d' ' -f5 /proc/self/stat`)
	for _, want := range []string{"/tmp\n", "X=y\n", "uid=1000 gid=1000 groups=10", "NoNewPrivs:\t1"} {
		if !strings.Contains(out, want) {
			t.Errorf("exec with runc's flags: output %q lacks %q", out, want)
		}
	}
	fields := strings.Fields(out)
	if pgrp := fields[len(fields)-1]; pgrp == "0" {
		t.Errorf("the exec'd process has no process group of its own (getpgrp 0)")
	}
	// The spec's CAP_KILL (5), CAP_NET_BIND_SERVICE (10), CAP_AUDIT_WRITE
	// (29), and CAP_NET_RAW (13).
	if out := c.ok("/", "exec", "--cap", "CAP_NET_RAW", id, "grep", "CapPrm", "/proc/self/status"); out != "CapPrm:\t0000000020002420\n" {
		t.Errorf("exec --cap CAP_NET_RAW: %q; want it added to the spec's", out)
	}

	pidFile := filepath.Join(t.TempDir(), "pid")
	c.ok("/", "exec", "-d", "--pid-file", pidFile, id, "sleep", "200")
	data, err := os.ReadFile(pidFile)
	if err != nil || !alive(atoi(t, string(data))) {
		t.Errorf("exec -d --pid-file: %q, %v; want a live process", data, err)
	}

	proc := filepath.Join(t.TempDir(), "process.json")
	p := specs.Process{Args: []string{"sh", "-c", "echo from-$P; pwd"}, Env: []string{"PATH=/bin", "P=file"}, Cwd: "/etc"}
	js, _ := json.Marshal(p)
	if err := os.WriteFile(proc, js, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := c.ok("/", "exec", "--process", proc, id); out != "from-file\n/etc\n" {
		t.Errorf("exec --process: %q", out)
	}
	if res := c.runIn("/", "exec", "--preserve-fds", "2", id, "true"); res.code == 0 || !strings.Contains(res.stderr, "--preserve-fds 2: fd 3 was not passed") {
		t.Errorf("exec --preserve-fds 2 without fds 3 and 4 open: exit %d, %q; want refused naming the flag and the fd", res.code, res.stderr)
	}
}

// --preserve-fds N for run (the init's exec), run -d and exec: the
// caller's fds 3 .. 3+N-1 are the process's 3 .., nothing above them.
func TestRuncPreserveFds(t *testing.T) {
	c := newRuncCLI(t)
	in := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(in, []byte("in-data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// check runs args with a pipe's write end as fd 3 and in as fd 4, and
	// returns what was written to the pipe.
	check := func(dir string, args ...string) string {
		t.Helper()
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		f, err := os.Open(in)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		res := c.runWith(dir, []*os.File{w, f}, args...)
		w.Close()
		if res.code != 0 {
			t.Fatalf("%s: exit %d: %s", strings.Join(args, " "), res.code, res.stderr)
		}
		done := make(chan []byte, 1)
		go func() {
			data, _ := io.ReadAll(r)
			done <- data
		}()
		select {
		case data := <-done:
			return string(data)
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: the pipe passed as fd 3 was not closed", strings.Join(args, " "))
			return ""
		}
	}
	script := `cat <&4 >&3; echo "$1" >&3; if [ -e /proc/$$/fd/5 ]; then echo fd-5-leaked >&3; fi`
	b := bundle(t, nil, "sh", "-c", script, "sh", "from-run")
	id := testutil.Name(t, 40)
	c.cleanup(id)
	if got := check(b, "run", "--preserve-fds", "2", id); got != "in-data\nfrom-run\n" {
		t.Errorf("run --preserve-fds 2: the container wrote %q to fd 3, want its fd 4's data and from-run", got)
	}

	b = bundle(t, nil, "sleep", "300")
	d := testutil.Name(t, 38) + "-d"
	c.cleanup(d)
	// The container keeps fd 3 (sleep inherits it): the pipe stays open
	// until it is killed.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if res := c.runWith(b, []*os.File{w}, "run", "-d", "--preserve-fds", "1", d); res.code != 0 {
		t.Fatalf("run -d --preserve-fds 1: exit %d: %s", res.code, res.stderr)
	}
	w.Close()
	var pids []int
	if err := json.Unmarshal([]byte(c.ok("/", "ps", "--format", "json", d)), &pids); err != nil || len(pids) != 1 {
		t.Fatalf("ps --format json: %v %v", pids, err)
	}
	var pst unix.Stat_t
	if err := unix.Fstat(int(r.Fd()), &pst); err != nil {
		t.Fatal(err)
	}
	var cst unix.Stat_t
	if err := unix.Stat("/proc/"+strconv.Itoa(pids[0])+"/fd/3", &cst); err != nil || cst.Ino != pst.Ino {
		t.Errorf("run -d --preserve-fds 1: the container's fd 3 is not the pipe (%v)", err)
	}
	if got := check("/", "exec", "--preserve-fds", "2", d, "sh", "-c", script, "sh", "from-exec"); got != "in-data\nfrom-exec\n" {
		t.Errorf("exec --preserve-fds 2: the process wrote %q to fd 3, want its fd 4's data and from-exec", got)
	}
	c.ok("/", "kill", d, "KILL")
	waitGone(t, pids[0])
}

// exec into a created container, as runc allows: the process runs in the
// container's namespaces and root while the init still waits for start,
// which then runs the container's own process.
func TestRuncExecCreated(t *testing.T) {
	c := newRuncCLI(t)
	b := bundle(t, func(s *specs.Spec) { s.Hostname = "created-host" }, "sleep", "300")
	id := testutil.Name(t, 40)
	c.cleanup(id)
	c.ok(b, "create", id)
	if out := c.ok("/", "exec", id, "sh", "-c", "hostname; test -e /bin/busybox && echo in-root"); out != "created-host\nin-root\n" {
		t.Errorf("exec into a created container: %q, want its hostname and root", out)
	}
	if out := c.ok("/", "state", id); !strings.Contains(out, `"created"`) {
		t.Errorf("after exec the container is not created still: %s", out)
	}
	c.ok("/", "start", id)
	var pids []int
	if err := json.Unmarshal([]byte(c.ok("/", "ps", "--format", "json", id)), &pids); err != nil || len(pids) != 1 {
		t.Fatalf("after start, ps --format json: %v %v; want the container's sleep", pids, err)
	}
	if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pids[0]) + "/comm"); string(comm) != "sleep\n" {
		t.Errorf("after start the container runs %q, want sleep", comm)
	}
	c.ok("/", "kill", id, "KILL")
	waitGone(t, pids[0])
}

// events --stats prints one runc stats event and exits; events --interval
// streams them until the container exits, its exit event last.
func TestRuncEventsStats(t *testing.T) {
	c := newRuncCLI(t)
	pids := int64(77)
	b := bundle(t, func(s *specs.Spec) {
		s.Linux.Resources = &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &pids}}
	}, "sleep", "300")
	id := testutil.Name(t, 40)
	c.cleanup(id)
	c.ok(b, "run", "-d", id)
	type statsEvent struct {
		Type string `json:"type"`
		ID   string `json:"id"`
		Data struct {
			CPU struct {
				Usage struct {
					Total uint64 `json:"total"`
				} `json:"usage"`
			} `json:"cpu"`
			Memory struct {
				Usage struct {
					Limit uint64 `json:"limit"`
					Usage uint64 `json:"usage"`
				} `json:"usage"`
			} `json:"memory"`
			Pids struct {
				Current uint64 `json:"current"`
				Limit   uint64 `json:"limit"`
			} `json:"pids"`
		} `json:"data"`
	}
	out := c.ok("/", "events", "--stats", id)
	var ev statsEvent
	if err := json.Unmarshal([]byte(out), &ev); err != nil || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("events --stats: %q (%v); want one JSON line", out, err)
	}
	if ev.Type != "stats" || ev.ID != id || ev.Data.Pids.Limit != 77 || ev.Data.Pids.Current < 1 || ev.Data.Memory.Usage.Usage == 0 || ev.Data.Memory.Usage.Limit == 0 {
		t.Errorf("events --stats: %+v; want type stats, the ID, pids 77 limit and some usage", ev)
	}

	done := make(chan result, 1)
	go func() { done <- c.runIn("/", "events", "--interval", "300ms", id) }()
	time.Sleep(1500 * time.Millisecond)
	c.ok("/", "kill", id, "KILL")
	var res result
	select {
	case res = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("events --interval did not end after the container was killed")
	}
	if res.code != 0 {
		t.Fatalf("events --interval: exit %d: %s", res.code, res.stderr)
	}
	out = res.stdout
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var types []string
	for _, l := range lines {
		var e struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("events --interval: line %q: %v", l, err)
		}
		types = append(types, e.Type)
	}
	if len(types) < 3 || types[0] != "stats" || types[len(types)-1] != "exit" {
		t.Errorf("events --interval 300ms over 1.5s: %v; want stats events, then exit", types)
	}
	if res := c.runIn("/", "events", "--stats", "--interval", "1s", id); res.code == 0 {
		t.Errorf("events --stats --interval was accepted")
	}
}

// exec exits as runc's does: the command's own status, or 255 when the
// runtime fails (no such container, no such binary, a PID file that
// cannot be written; the process is then not left running).
func TestRuncExecFailuresExit255(t *testing.T) {
	c := newRuncCLI(t)
	b := bundle(t, nil, "sleep", "300")
	id := testutil.Name(t, 40)
	c.cleanup(id)
	c.ok(b, "run", "-d", id)
	for _, x := range []struct {
		args []string
		code int
	}{
		{[]string{"exec", id, "false"}, 1},
		{[]string{"exec", id, "sh", "-c", "exit 42"}, 42},
		{[]string{"exec", "--pid-file", "/non-existent/directory", id, "true"}, 255},
		{[]string{"exec", id, "no-such-binary"}, 255},
		{[]string{"exec", "no-such-container", "true"}, 255},
		{[]string{"exec", "-d", "--pid-file", "/non-existent/directory", id, "sleep", "123"}, 255},
	} {
		if res := c.runIn("/", x.args...); res.code != x.code {
			t.Errorf("%s: exit %d (%q), want %d", strings.Join(x.args, " "), res.code, res.stderr, x.code)
		}
	}
	var pids []int
	if err := json.Unmarshal([]byte(c.ok("/", "ps", "--format", "json", id)), &pids); err != nil || len(pids) != 1 {
		t.Errorf("after exec -d with a PID file it could not write: ps %v (%v); want the container's init alone", pids, err)
	}
}

// --debug logs exec's steps at debug level, in runc's words (runc's
// exec.bats greps for them): to stderr, or with --log to FILE only, as
// text (level=debug) or JSON ("level":"debug").
func TestRuncExecDebugLog(t *testing.T) {
	c := newRuncCLI(t)
	b := bundle(t, nil, "sleep", "300")
	id := testutil.Name(t, 40)
	c.cleanup(id)
	c.ok(b, "run", "-d", id)
	steps := []string{"nsexec container setup", "child process in init()", "setns_init: about to exec"}
	check := func(what, out, level string) {
		t.Helper()
		for _, want := range append([]string{level}, steps...) {
			if !strings.Contains(out, want) {
				t.Errorf("%s: the debug log lacks %q:\n%s", what, want, out)
			}
		}
	}
	res := c.runIn("/", "--debug", "exec", id, "true")
	if res.code != 0 {
		t.Fatalf("--debug exec: exit %d: %s", res.code, res.stderr)
	}
	check("--debug exec (stderr)", res.stderr, "level=debug")
	if res := c.runIn("/", "exec", id, "true"); res.code != 0 || res.stderr != "" {
		t.Errorf("exec without --debug: exit %d, stderr %q; want nothing logged", res.code, res.stderr)
	}
	logFile := filepath.Join(t.TempDir(), "log.out")
	res = c.runIn("/", "--debug", "--log", logFile, "exec", id, "true")
	if res.code != 0 || strings.Contains(res.stderr, "level=debug") {
		t.Errorf("--debug --log exec: exit %d, stderr %q; want the debug log in the file only", res.code, res.stderr)
	}
	data, _ := os.ReadFile(logFile)
	check("--debug --log exec (file)", string(data), "level=debug")
	jsonLog := filepath.Join(t.TempDir(), "log.json")
	c.ok("/", "--debug", "--log", jsonLog, "--log-format", "json", "exec", id, "true")
	data, _ = os.ReadFile(jsonLog)
	check("--debug --log --log-format json exec", string(data), `"level":"debug"`)
}

// exec --cgroup puts the process in an existing sub-cgroup of the
// container's, as runc's does: CONTROLLER:PATH for one hierarchy (v1),
// PATH alone for all; a path outside the container's cgroup, a missing
// sub-cgroup or an unknown controller is refused (exit 255) with runc's
// words.
func TestRuncExecSubCgroup(t *testing.T) {
	c := newRuncCLI(t)
	b := bundle(t, nil, "sleep", "300")
	id := testutil.Name(t, 40)
	st := func() *executor.State {
		s, err := executor.ReadState(c.root, id)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var made []string
	t.Cleanup(func() { // after the container's delete (cleanups run last first)
		for i := len(made) - 1; i >= 0; i-- {
			os.Remove(made[i])
		}
	})
	c.cleanup(id)
	c.ok(b, "run", "-d", id)
	paths := st().CgroupPaths
	mkdir := func(dir string) {
		t.Helper()
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
		made = append(made, dir)
	}
	// lineOf is the /proc/self/cgroup line of the hierarchy ctrl names
	// ("" for v2's 0::).
	lineOf := func(out, ctrl string) string {
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.SplitN(l, ":", 3)
			if len(f) != 3 {
				continue
			}
			if (ctrl == "" && f[0] == "0") || (ctrl != "" && slices.Contains(strings.Split(f[1], ","), ctrl)) {
				return l
			}
		}
		t.Fatalf("no line for %q in /proc/self/cgroup:\n%s", ctrl, out)
		return ""
	}
	ctrl, other := "memory", "pids"
	if _, v1 := paths["memory"]; !v1 {
		ctrl, other = "", ""
	}
	base := lineOf(c.ok("/", "exec", id, "cat", "/proc/self/cgroup"), ctrl)
	base = base[strings.LastIndex(base, ":")+1:]

	mkdir(filepath.Join(paths[ctrl], "sub"))
	if ctrl != "" {
		out := c.ok("/", "exec", "--cgroup", ctrl+":sub", id, "cat", "/proc/self/cgroup")
		if l := lineOf(out, ctrl); !strings.HasSuffix(l, ":"+path.Join(base, "sub")) {
			t.Errorf("exec --cgroup %s:sub: %q, want the sub-cgroup %s", ctrl, l, path.Join(base, "sub"))
		}
		if l := lineOf(out, other); strings.HasSuffix(l, "/sub") {
			t.Errorf("exec --cgroup %s:sub moved the process in %s too: %q", ctrl, other, l)
		}
	}
	// PATH alone: that sub-cgroup in every hierarchy the container has.
	for _, dir := range paths {
		mkdir(filepath.Join(dir, "all"))
		// A v1 cpuset cgroup takes no process before it has CPUs and
		// memory nodes: its parent's.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, "all", f), v, 0); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	out := c.ok("/", "exec", "--cgroup", "all", id, "cat", "/proc/self/cgroup")
	if l := lineOf(out, ctrl); !strings.HasSuffix(l, ":"+path.Join(base, "all")) {
		t.Errorf("exec --cgroup all: %q, want the sub-cgroup %s", l, path.Join(base, "all"))
	}
	for _, x := range []struct{ arg, want string }{
		{"..", " .. is not a sub cgroup path"},
		{"../" + filepath.Base(paths[ctrl]) + "x", "is not a sub cgroup path"},
		{"nonexistent", "/nonexistent/cgroup.procs: no such file "},
		{"whaaat:/", "unknown controller "},
		{"a:b:c", "want [CONTROLLER:]PATH"},
	} {
		res := c.runIn("/", "exec", "--cgroup", x.arg, id, "true")
		if res.code != 255 || !strings.Contains(res.stderr, x.want) {
			t.Errorf("exec --cgroup %s: exit %d, %q; want 255 and %q", x.arg, res.code, res.stderr, x.want)
		}
	}
	if res := c.runIn("/", "exec", "--cgroup", "nonexistent", id, "true"); !strings.Contains(res.stderr, " adding pid ") {
		t.Errorf("exec --cgroup nonexistent: %q; want runc's \"adding pid\"", res.stderr)
	}
}

// Plain `events ID` streams a stats event every 5s, runc's default (its
// events.bats waits for the first one), until the container exits;
// --interval 0 gives the events alone.
func TestRuncEventsDefaultInterval(t *testing.T) {
	c := newRuncCLI(t)
	b := bundle(t, nil, "sleep", "300")
	id := testutil.Name(t, 40)
	c.cleanup(id)
	c.ok(b, "run", "-d", id)
	// events runs on until the container exits: out is read while it runs.
	start := func(args ...string) (*os.File, chan error) {
		out, err := os.Create(filepath.Join(t.TempDir(), "events"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { out.Close() })
		cmd := exec.Command(c.bin, append([]string{"--root", c.root, "events"}, args...)...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done, exited := make(chan error, 1), make(chan struct{})
		go func() { done <- cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-exited
		})
		return out, done
	}
	types := func(f *os.File) []string {
		data, _ := os.ReadFile(f.Name())
		var ts []string
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var e struct {
				Type string `json:"type"`
				ID   string `json:"id"`
			}
			if l == "" {
				continue
			}
			if err := json.Unmarshal([]byte(l), &e); err != nil || e.ID != id {
				t.Fatalf("events: line %q (%v); want JSON events of %s", l, err, id)
			}
			ts = append(ts, e.Type)
		}
		return ts
	}
	plain, plainDone := start(id)
	bare, bareDone := start("--interval", "0", id)
	deadline := time.Now().Add(15 * time.Second)
	for len(types(plain)) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if ts := types(plain); len(ts) == 0 || ts[0] != "stats" {
		t.Fatalf("events ID: %v after 15s; want a stats event (runc's default streams one every 5s)", ts)
	}
	c.ok("/", "kill", id, "KILL")
	for _, d := range []chan error{plainDone, bareDone} {
		select {
		case err := <-d:
			if err != nil {
				t.Errorf("events: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("events did not end after the container was killed")
		}
	}
	if ts := types(plain); ts[len(ts)-1] != "exit" {
		t.Errorf("events ID: %v; want stats events, the exit last", ts)
	}
	if ts := types(bare); !slices.Equal(ts, []string{"exit"}) {
		t.Errorf("events --interval 0 ID: %v; want the exit event alone", ts)
	}
}

// --debug logs create's steps in runc's words (runc's debug.bats greps
// for them), to stderr or with --log to FILE alone, as text or JSON.
func TestRuncRunDebugLog(t *testing.T) {
	c := newRuncCLI(t)
	b := bundle(t, nil, "echo", "Hello World")
	steps := []string{"nsexec container setup", "child process in init()", "init: closing the pipe to signal completion"}
	check := func(what, out, level string) {
		t.Helper()
		for _, want := range append([]string{level}, steps...) {
			if !strings.Contains(out, want) {
				t.Errorf("%s: the debug log lacks %q:\n%s", what, want, out)
			}
		}
	}
	id := testutil.Name(t, 38)
	c.cleanup(id + "-1")
	res := c.runIn(b, "--debug", "run", id+"-1")
	if res.code != 0 || res.stdout != "Hello World\n" {
		t.Fatalf("--debug run: exit %d, stdout %q: %s", res.code, res.stdout, res.stderr)
	}
	check("--debug run (stderr)", res.stderr, "level=debug")
	logFile := filepath.Join(t.TempDir(), "log.json")
	c.cleanup(id + "-2")
	res = c.runIn(b, "--log", logFile, "--log-format", "json", "--debug", "run", id+"-2")
	if res.code != 0 || strings.Contains(res.stderr, "debug") {
		t.Errorf("--log --debug run: exit %d, stderr %q; want the debug log in the file alone", res.code, res.stderr)
	}
	data, _ := os.ReadFile(logFile)
	check("--log --log-format json --debug run (file)", string(data), `"level":"debug"`)
}

// process.terminal's pty comes from the container's own devpts, as
// runc's init opens it: tty(1) in the container names it, and it belongs
// to the process's user and devpts' tty group (runc's tty.bats "tty
// owner").
func TestRuncTerminalFromContainerDevpts(t *testing.T) {
	c := newRuncCLI(t)
	rootfs := testutil.BusyboxRootfs(t)
	dir := filepath.Dir(rootfs)
	os.Remove(filepath.Join(dir, "config.json"))
	c.ok(dir, "spec")
	s := readSpec(t, dir)
	s.Process.Args = []string{"sh", "-c", `echo "tty=$(tty) owner=$(stat -c %u:%g $(tty))"; sleep 100`}
	s.Process.User = specs.User{UID: 1000, GID: 100}
	writeSpec(t, dir, s)
	sock, masters := consoleSocket(t)
	id := testutil.Name(t, 40)
	c.cleanup(id)
	c.ok(dir, "run", "-d", "--console-socket", sock, id)
	var master *os.File
	select {
	case master = <-masters:
	case <-time.After(10 * time.Second):
		t.Fatal("no terminal came over --console-socket")
	}
	defer master.Close()
	out := readUntil(t, master, "\n") // one echo, one write
	if !strings.Contains(out, "tty=/dev/pts/0 owner=1000:5") {
		t.Errorf("the container's terminal: %q; want tty=/dev/pts/0 owner=1000:5 (its own devpts, its user, the tty group)", out)
	}
}

// exec into a paused container is refused with runc's words; with
// --ignore-paused it waits, frozen with the container, and runs once the
// container is resumed (runc's cgroups.bats).
func TestRuncExecPaused(t *testing.T) {
	c := newRuncCLI(t)
	b := bundle(t, nil, "sleep", "1000")
	id := testutil.Name(t, 40)
	c.cleanup(id)
	c.ok(b, "run", "-d", id)
	c.ok(b, "pause", id)
	if res := c.runIn(b, "exec", id, "echo", "ok"); res.code != 255 || !strings.Contains(res.stderr, "cannot exec in a paused container") {
		t.Fatalf("exec into a paused container: exit %d, stderr %q; want 255 and runc's words", res.code, res.stderr)
	}
	done := make(chan result, 1)
	go func() { done <- c.runIn(b, "exec", "--ignore-paused", id, "echo", "ok") }()
	select {
	case res := <-done:
		t.Fatalf("exec --ignore-paused finished while the container was paused: %+v", res)
	case <-time.After(time.Second):
	}
	c.ok(b, "resume", id)
	select {
	case res := <-done:
		if res.code != 0 || strings.TrimSpace(res.stdout) != "ok" {
			t.Fatalf("exec --ignore-paused after resume: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("exec --ignore-paused did not finish after resume")
	}
}
