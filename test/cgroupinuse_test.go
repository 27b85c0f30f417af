package test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// `runtime create` never joins a cgroup that is frozen or holds
// processes: it fails at once (no hang), saying so and naming the cgroup
// and the processes, and leaves the cgroup and its processes as they
// were (runc refuses with "unexpectedly frozen" likewise).
func TestCreateRefusesCgroupInUse(t *testing.T) {
	r := newRT(t)
	id := "cginuse-" + strconv.Itoa(os.Getpid())
	root, file, frozen, thawed := "/sys/fs/cgroup/freezer", "freezer.state", "FROZEN", "THAWED"
	if _, err := os.Stat(root); err != nil {
		root, file, frozen, thawed = "/sys/fs/cgroup", "cgroup.freeze", "1", "0"
	}
	// Where the CLI puts container id: /reconciled/ID.
	parent := filepath.Join(root, "reconciled")
	dir := filepath.Join(parent, id)
	madeParent := os.Mkdir(parent, 0o755) == nil
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sleep := exec.Command("/bin/sleep", "100000")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	r.cleanup(id)
	t.Cleanup(func() {
		os.WriteFile(filepath.Join(dir, file), []byte(thawed), 0)
		sleep.Process.Kill()
		sleep.Wait()
		for try := 0; try < 100 && syscall.Rmdir(dir) == syscall.EBUSY; try++ {
			time.Sleep(20 * time.Millisecond)
		}
		if madeParent {
			syscall.Rmdir(parent)
		}
	})
	pid := strconv.Itoa(sleep.Process.Pid)
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(pid), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(frozen), 0); err != nil {
		t.Fatal(err)
	}
	b := bundle(t, nil, "sleep", "1000")
	create := func() (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		// A file, not a pipe: a container that joined the cgroup would
		// hold a pipe open past the command's end.
		f, err := os.CreateTemp(t.TempDir(), "out")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd := exec.CommandContext(ctx, r.bin, "runtime", "--root", r.root, "create", "--bundle", b, id)
		cmd.Stdout, cmd.Stderr = f, f
		err = cmd.Run()
		out, _ := os.ReadFile(f.Name())
		if ctx.Err() != nil {
			t.Fatalf("create into a cgroup in use did not end within 20s: %s", out)
		}
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		return 0, string(out)
	}
	for _, want := range []string{"unexpectedly frozen", "already holds processes"} {
		code, out := create()
		if code == 0 || !strings.Contains(out, want) || !strings.Contains(out, dir) || !strings.Contains(out, pid) {
			t.Errorf("create into cgroup %s (%s): exit %d, %q; want an error saying %q naming it and %s", dir, want, code, out, want, pid)
		}
		procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if strings.TrimSpace(string(procs)) != pid {
			t.Errorf("the cgroup holds %q after the create; want only %s", procs, pid)
		}
		if _, err := os.Stat(filepath.Join(r.root, id)); !os.IsNotExist(err) {
			t.Errorf("the refused create left its state: %v", err)
		}
		// Then thawed: still refused, for the process in it.
		os.WriteFile(filepath.Join(dir, file), []byte(thawed), 0)
	}
	if s, _ := os.ReadFile(filepath.Join(dir, file)); strings.TrimSpace(string(s)) != thawed {
		t.Errorf("%s: %q", file, s)
	}
}
