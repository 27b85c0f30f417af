package waiter

import (
	"io"
	"os"
	"os/exec"
	"testing"
	"time"
)

// The joiner reports a failure on the sync socket as the exec stage would
// ({"error":"..."}), naming the step and the errno, and exits 1: here its
// "user namespace" fd is a pipe, which setns refuses with EINVAL (22).
// (That it joins a real user namespace is executor's TestUserNamespaceExec.)
func TestUsernsJoinerReportsFailure(t *testing.T) {
	if !UsernsJoinerAvailable() {
		t.Skip("no user-namespace joiner on this architecture (exec into a user namespace is refused there)")
	}
	bin := writeProgram(t, "joiner", usernsCode)
	notNS, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer notNS.Close()
	defer w.Close()
	syncR, syncW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer syncR.Close()
	self, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	// fds: 3 the sync "socket", 4 the namespace, 5 the program, 6 itself.
	cmd := &exec.Cmd{
		Path:       bin,
		Args:       []string{"4", "5", "3", "6", "reconciled-exec", "x"},
		ExtraFiles: []*os.File{syncW, notNS, self, self},
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	syncW.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the joiner did not exit")
	}
	if cmd.ProcessState.ExitCode() != 1 {
		t.Errorf("exit: %v, want status 1", err)
	}
	msg, _ := io.ReadAll(syncR)
	if want := `{"error":"user namespace: setns: errno 022"}` + "\n"; string(msg) != want {
		t.Errorf("sync socket got %q, want %q", msg, want)
	}
}
