package waiter

import (
	"bufio"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The spawner (the reaper started with MonitorEnv=s) answers a request
// that does not carry exactly three descriptors with -EINVAL and keeps
// serving. A good one gets the PID of a monitor that is the requester's
// child (CLONE_PARENT), in a session of its own, titled
// "reconciled-monitor", with the three descriptors on 3, 4 and 5 and
// nothing of the spawner's: it clones the init from fd 5 (here cat, on
// the spawner's stdin), reports it on the sync socket and waits for it.
// EOF on the spawner's socket ends it.
func TestSpawner(t *testing.T) {
	if !ReaperAvailable() {
		t.Skip("no reaper on this architecture (the Go monitor starts inits)")
	}
	bin := writeProgram(t, "reaper", reaperCode)
	ctl := socketpair(t, unix.SOCK_SEQPACKET)
	in, feed, err := os.Pipe() // the init's stdin: it lives until feed closes
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	defer feed.Close()
	cmd := &exec.Cmd{
		Path:       bin,
		Args:       []string{"reconciled-spawner", strings.Repeat(" ", 16)},
		Env:        []string{MonitorEnv + "=s", "INIT_ENV=1"},
		Stdin:      in,
		ExtraFiles: []*os.File{ctl[1]},
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ctl[1].Close()
	t.Cleanup(func() {
		ctl[0].Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	ask := func(flags string, fds ...int) int32 {
		t.Helper()
		var oob []byte
		if len(fds) > 0 {
			oob = unix.UnixRights(fds...)
		}
		if err := unix.Sendmsg(int(ctl[0].Fd()), []byte(flags), oob, nil, 0); err != nil {
			t.Fatal(err)
		}
		var b [4]byte
		if n, err := ctl[0].Read(b[:]); err != nil || n != 4 {
			t.Fatalf("answer: %d bytes, %v", n, err)
		}
		return int32(binary.LittleEndian.Uint32(b[:]))
	}

	if got := ask("0"); got != -int32(unix.EINVAL) {
		t.Errorf("a request without descriptors: answer %d, want %d", got, -int32(unix.EINVAL))
	}
	if got := ask("0", int(in.Fd()), int(in.Fd())); got != -int32(unix.EINVAL) {
		t.Errorf("a request with two descriptors: answer %d, want %d", got, -int32(unix.EINVAL))
	}

	sync := socketpair(t, unix.SOCK_STREAM)
	var life [2]int
	if err := unix.Pipe2(life[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	lifeline := os.NewFile(uintptr(life[1]), "lifeline")
	defer lifeline.Close()
	cat, err := exec.LookPath("cat")
	if err == nil {
		cat, err = filepath.EvalSymlinks(cat) // as /proc/PID/exe shows it
	}
	if err != nil {
		t.Fatal(err)
	}
	initExe, err := os.Open(cat)
	if err != nil {
		t.Fatal(err)
	}
	defer initExe.Close()
	mon := int(ask("0", int(sync[1].Fd()), life[0], int(initExe.Fd())))
	unix.Close(life[0])
	sync[1].Close()
	if mon <= 0 {
		t.Fatalf("a good request: answer %d, want a PID", mon)
	}
	reaped := false
	t.Cleanup(func() {
		if !reaped {
			unix.Kill(mon, unix.SIGKILL)
			unix.Wait4(mon, nil, 0, nil)
		}
	})
	line, err := bufio.NewReader(sync[0]).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, `{"pid":`) {
		t.Fatalf("the monitor reported %q, %v; want {\"pid\":N}", line, err)
	}
	initPid, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(line, `{"pid":`), "}\n"))

	stat, err := os.ReadFile("/proc/" + strconv.Itoa(mon) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	if ppid, _ := strconv.Atoi(f[1]); ppid != os.Getpid() {
		t.Errorf("monitor %d has parent %d, want this process %d", mon, ppid, os.Getpid())
	}
	if sid, _ := strconv.Atoi(f[3]); sid != mon {
		t.Errorf("monitor %d is in session %d, want its own", mon, sid)
	}
	args, _ := os.ReadFile("/proc/" + strconv.Itoa(mon) + "/cmdline")
	if want := "reconciled-monitor\x00" + strings.Repeat(" ", 16) + "\x00"; string(args) != want {
		t.Errorf("monitor's cmdline %q, want %q", args, want)
	}
	if exe, _ := os.Readlink("/proc/" + strconv.Itoa(initPid) + "/exe"); exe != cat {
		t.Errorf("the init %d runs %q, want %s", initPid, exe, cat)
	}
	// The monitor closes the sync socket right after it reported: then
	// it holds stdio, the lifeline, the init's binary and the init's
	// pidfd, and no socket (the spawner's would stay).
	sockets := func() []string {
		var held []string
		fds, _ := os.ReadDir("/proc/" + strconv.Itoa(mon) + "/fd")
		for _, e := range fds {
			if target, _ := os.Readlink("/proc/" + strconv.Itoa(mon) + "/fd/" + e.Name()); strings.HasPrefix(target, "socket:") {
				held = append(held, e.Name()+" "+target)
			}
		}
		return held
	}
	for deadline := time.Now().Add(5 * time.Second); len(sockets()) > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if held := sockets(); len(held) > 0 {
		t.Errorf("monitor holds sockets: %v", held)
	}
	if target, _ := os.Readlink("/proc/" + strconv.Itoa(mon) + "/fd/5"); target != cat {
		t.Errorf("monitor's fd 5 is %q, want the init's binary %s", target, cat)
	}

	// The init ends (EOF on its stdin): the monitor, with no state
	// directory, only waits for it and exits 0; this process reaps it.
	feed.Close()
	var ws unix.WaitStatus
	if _, err := unix.Wait4(mon, &ws, 0, nil); err != nil {
		t.Fatalf("wait for the monitor: %v", err)
	}
	reaped = true
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("monitor ended %v, want exit 0", ws)
	}

	ctl[0].Close()
	if err := cmd.Wait(); err != nil {
		t.Errorf("the spawner after EOF: %v, want exit 0", err)
	}
}

func socketpair(t *testing.T, typ int) [2]*os.File {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := [2]*os.File{os.NewFile(uintptr(fds[0]), "socket"), os.NewFile(uintptr(fds[1]), "socket")}
	t.Cleanup(func() { p[0].Close(); p[1].Close() })
	return p
}
