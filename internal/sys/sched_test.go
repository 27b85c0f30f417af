package sys

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// schedHelperEnv makes the test binary run schedHelper instead of the
// tests: Batch switches a whole process for good, so it runs in one of
// its own.
const schedHelperEnv = "RECONCILED_TEST_SCHED_HELPER"

// runSchedHelper runs schedHelper and exits, in the process TestBatch
// starts (TestMain calls it first).
func runSchedHelper() {
	if os.Getenv(schedHelperEnv) != "1" {
		return
	}
	if err := schedHelper(); err != nil {
		fmt.Println("FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("OK")
	os.Exit(0)
}

// threadSched is thread tid's policy and nice value.
func threadSched(tid int) (Sched, error) {
	a, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return Sched{}, fmt.Errorf("sched_getattr %d: %w", tid, err)
	}
	return Sched{Policy: a.Policy, Nice: a.Nice}, nil
}

// allThreads checks that every thread of pid has want.
func allThreads(pid int, want Sched) error {
	tids, err := readTids(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	if err != nil {
		return err
	}
	for _, tid := range tids {
		got, err := threadSched(tid)
		if errors.Is(err, unix.ESRCH) {
			continue // ended meanwhile
		}
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("thread %d of %d: policy %d nice %d, want policy %d nice %d", tid, pid, got.Policy, got.Nice, want.Policy, want.Nice)
		}
	}
	return nil
}

// schedHelper is the process TestBatch starts: it reports, as an error,
// anything that is not what Batch promises for the nice value it was
// started with.
func schedHelper() error {
	self, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		return err
	}
	if self.Policy != unix.SCHED_NORMAL {
		// Started with another policy: Batch leaves the process alone.
		switched, err := Batch()
		if err != nil || switched || Batched() {
			return fmt.Errorf("Batch in a process of policy %d: switched %v, err %v", self.Policy, switched, err)
		}
		return allThreads(os.Getpid(), Sched{Policy: self.Policy, Nice: self.Nice})
	}
	orig := Sched{Policy: unix.SCHED_NORMAL, Nice: self.Nice}
	// Threads busy making more threads while Batch runs.
	stop := make(chan struct{})
	defer close(stop)
	for range 4 {
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
					OnOwnThread(func() {})
				}
			}
		}()
	}
	switched, err := Batch()
	if err != nil || !switched || !Batched() {
		return fmt.Errorf("Batch: switched %v, err %v", switched, err)
	}
	batch := Sched{Policy: unix.SCHED_BATCH, Nice: orig.Nice}
	time.Sleep(20 * time.Millisecond) // threads made after Batch inherit it
	if err := allThreads(os.Getpid(), batch); err != nil {
		return fmt.Errorf("after Batch: %w", err)
	}

	// A child started as usual inherits batch; one started through
	// AsStarted has what this process was started with; ResetStarted
	// gives it back to the first.
	start := func(asStarted bool) (*exec.Cmd, error) {
		cmd := exec.Command("sleep", "60")
		var err error
		if asStarted {
			err = AsStarted(cmd.Start)
		} else {
			err = cmd.Start()
		}
		return cmd, err
	}
	plain, err := start(false)
	if err != nil {
		return err
	}
	defer func() { plain.Process.Kill(); plain.Wait() }()
	as, err := start(true)
	if err != nil {
		return err
	}
	defer func() { as.Process.Kill(); as.Wait() }()
	if err := allThreads(plain.Process.Pid, batch); err != nil {
		return fmt.Errorf("child started as usual: %w", err)
	}
	if err := allThreads(as.Process.Pid, orig); err != nil {
		return fmt.Errorf("child started through AsStarted: %w", err)
	}
	if err := ResetStarted(plain.Process.Pid); err != nil {
		return err
	}
	if err := allThreads(plain.Process.Pid, orig); err != nil {
		return fmt.Errorf("child after ResetStarted: %w", err)
	}
	// ResetStarted sets every thread: this process's own, for one.
	if err := ResetStarted(os.Getpid()); err != nil {
		return err
	}
	return allThreads(os.Getpid(), orig)
}

// Batch switches every thread, keeps the nice value, and what starts for
// others through AsStarted and ResetStarted runs as the process was
// started; a process started with another policy is left alone.
func TestBatch(t *testing.T) {
	for _, c := range []struct {
		name string
		wrap []string // the helper runs under this
	}{
		{"nice 0", nil},
		{"nice 5", []string{"nice", "-n", "5"}},
		{"SCHED_IDLE", []string{"chrt", "-i", "0"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append(append([]string{}, c.wrap...), os.Args[0], "-test.run=^$")
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Env = append(os.Environ(), schedHelperEnv+"=1")
			out, err := cmd.CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "OK" {
				t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
}

// Without Batch, AsStarted runs start on the caller's thread and
// ResetStarted does nothing.
func TestNotBatched(t *testing.T) {
	if Batched() {
		t.Fatal("Batched in a process that never called Batch")
	}
	ran := false
	if err := AsStarted(func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("AsStarted: ran %v, err %v", ran, err)
	}
	if err := ResetStarted(os.Getpid()); err != nil {
		t.Fatal(err)
	}
}
