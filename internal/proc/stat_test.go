package proc

import (
	"bufio"
	"os"
	"os/exec"
	"testing"
	"time"
)

// tail is fields 3..52 of a real /proc/PID/stat line (state S, ppid 1,
// utime 7, stime 3, starttime 123456).
const tail = "S 1 1234 1234 0 -1 4194560 1033 0 0 0 7 3 0 0 20 0 1 0 123456 " +
	"8704000 338 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"

func TestParseStatHostileComm(t *testing.T) {
	for _, comm := range []string{
		"sleep",
		"a b",                      // a space
		"x) R 2 3",                 // a ')' followed by what looks like fields
		"))",                       // only parentheses
		"(",                        // an unbalanced '('
		") Z 99 ( 1 2 3 4 5 6 7 )", // a fake zombie state inside the name
		"new\nline",                // a newline
		"",                         // empty
	} {
		line := "4242 (" + comm + ") " + tail
		s, err := ParseStat([]byte(line))
		if err != nil {
			t.Errorf("ParseStat(%q): %v", line, err)
			continue
		}
		want := Stat{Comm: comm, State: 'S', PPID: 1, UTime: 7, STime: 3, StartTime: 123456}
		if s != want {
			t.Errorf("ParseStat(%q) = %+v, want %+v", line, s, want)
		}
		if s.Zombie() {
			t.Errorf("ParseStat(%q): a zombie", line)
		}
	}
}

func TestParseStatBad(t *testing.T) {
	for _, line := range []string{
		"",
		"4242 sleep S 1",
		"4242 (sleep)",
		"4242 (sleep) ",
		"4242 (sleep) S 1 2 3",         // too few fields
		"4242 (sleep) S x " + tail[4:], // a PPID that is no number
		"4242 (sleep)S 1 1234 1234 0 -1 4194560 1", // no space after ')'
	} {
		if s, err := ParseStat([]byte(line)); err == nil {
			t.Errorf("ParseStat(%q) = %+v, want an error", line, s)
		}
	}
}

func TestZombie(t *testing.T) {
	for state, want := range map[byte]bool{'R': false, 'S': false, 'D': false, 'T': false, 'Z': true, 'X': true} {
		s := Stat{State: state}
		if s.Zombie() != want {
			t.Errorf("Zombie(%c) = %v, want %v", state, !want, want)
		}
	}
}

// TestReadStatRealHostileComm runs processes that rename themselves (a
// write to /proc/self/comm: the kernel refuses it from another process) to
// names built to fool a parser that splits on the first ')' or on spaces,
// and checks that their identity (start time), parent and state read right.
func TestReadStatRealHostileComm(t *testing.T) {
	// The kernel keeps at most 15 bytes of a name; each here is shorter.
	for _, comm := range []string{"a) Z 1 (b", "x y)", ") X 0 0", "((", "a\nb"} {
		sh := exec.Command("sh", "-c", `printf '%s' "$1" >/proc/$$/comm && echo ok && read x; true`, "sh", comm)
		stdin, err := sh.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := sh.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := sh.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			sh.Process.Kill()
			sh.Wait()
		})
		if _, err := bufio.NewReader(stdout).ReadString('\n'); err != nil {
			t.Fatalf("sh renaming itself %q: %v", comm, err)
		}
		pid := sh.Process.Pid
		got, err := ReadStat(pid)
		if err != nil {
			t.Fatalf("ReadStat with comm %q: %v", comm, err)
		}
		if got.Comm != comm || got.PPID != os.Getpid() || got.StartTime == 0 || got.Zombie() {
			t.Errorf("ReadStat with comm %q = %+v, want that comm, ppid %d, a start time, not a zombie",
				comm, got, os.Getpid())
		}
		if ok, err := Alive(pid, got.StartTime); !ok || err != nil {
			t.Errorf("Alive with comm %q = %v, %v; want true", comm, ok, err)
		}
		if ok, err := Alive(pid, got.StartTime+1); ok || err != nil {
			t.Errorf("Alive with another start time = %v, %v; want false (a reused PID)", ok, err)
		}
		start, zombie, err := StartTime(pid)
		if err != nil || zombie || start != got.StartTime {
			t.Errorf("StartTime with comm %q = %d, %v, %v", comm, start, zombie, err)
		}
		stdin.Close()
		if err := sh.Wait(); err != nil {
			t.Errorf("sh with comm %q: %v", comm, err)
		}
	}
}

func TestAliveGoneAndZombie(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	// The child has exited and been reaped: its PID names nothing (or,
	// reused, another process with another start time).
	if ok, err := Alive(cmd.Process.Pid, 1); ok || err != nil {
		t.Errorf("Alive(reaped) = %v, %v; want false, nil", ok, err)
	}
	if ok, err := Alive(0, 0); ok || err != nil {
		t.Errorf("Alive(0) = %v, %v", ok, err)
	}
	if Running(-1, 0) {
		t.Error("Running(-1)")
	}

	z := exec.Command("sh", "-c", "exit 0")
	if err := z.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { z.Wait() })
	pid := z.Process.Pid
	// Not waited for: it becomes a zombie once it exits.
	for i := 0; ; i++ {
		s, err := ReadStat(pid)
		if err != nil {
			t.Fatal(err)
		}
		if s.Zombie() {
			if ok, err := Alive(pid, s.StartTime); ok || err != nil {
				t.Errorf("Alive(zombie) = %v, %v; want false, nil", ok, err)
			}
			if Exists(pid) {
				t.Error("Exists(zombie) = true")
			}
			break
		}
		if i > 500 {
			t.Fatalf("%d never became a zombie: %+v", pid, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !Exists(os.Getpid()) {
		t.Error("Exists(self) = false")
	}
}

func TestAliveNoAllocs(t *testing.T) {
	start, _, err := StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	pid := os.Getpid()
	n := testing.AllocsPerRun(20, func() {
		if ok, _ := Alive(pid, start); !ok {
			t.Fatal("not alive")
		}
	})
	// The path costs three: the PID's digits, the concatenation and its
	// NUL-terminated copy for open(2). Reading and parsing cost none.
	if n > 3 {
		t.Errorf("Alive allocates %v times a call, want at most 3", n)
	}
}

// This test process is no PID namespace's first process; the NSpid line
// is read.
func TestNamespaceInitSelf(t *testing.T) {
	init, err := NamespaceInit(os.Getpid())
	if err != nil || init {
		t.Errorf("NamespaceInit(self) = %v, %v", init, err)
	}
	if _, err := NamespaceInit(-1); err == nil {
		t.Error("NamespaceInit(-1): no error")
	}
}
