package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/internal/testutil"
)

// CreateAndStart, as the daemon creates (with spares, a runner init):
// the init goes on to its exec as soon as it is set up, and its monitor
// knows the container before that, so a process that exits at once has
// its exit recorded, as after Create and Start. A failed exec removes the
// container (as Start); a failed last step of the setup is the create's
// and leaves nothing.
func TestCreateAndStart(t *testing.T) {
	r := newRT(t)
	api := spareRuntime(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	name := testutil.Name(t, 40)
	remove := func(id string) { t.Cleanup(func() { api.Delete(context.Background(), id, true) }) }

	for i := range 10 {
		id := fmt.Sprintf("%s-%d", name, i)
		remove(id)
		out, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		st, created, err := api.CreateAndStart(ctx, id, bundle(t, nil, "sh", "-c", "echo hi; exit 7"), executor.CreateOptions{Stdout: out, Stderr: out})
		if err != nil || !created {
			t.Fatalf("CreateAndStart %s: created %v, %v", id, created, err)
		}
		if st.Status != executor.StatusRunning || st.Pid <= 0 || st.Started.IsZero() || st.Started.Before(st.Created) {
			t.Errorf("state returned: status %s, pid %d, created %s, started %s", st.Status, st.Pid, st.Created, st.Started)
		}
		done, err := api.Wait(ctx, id)
		if err != nil {
			t.Fatalf("wait %s: %v", id, err)
		}
		if done.Status != executor.StatusStopped || !done.Exited || done.ExitCode != 7 || done.Pid != st.Pid {
			t.Errorf("%s after its exit: status %s, exited %v, code %d, pid %d (started as %d)", id, done.Status, done.Exited, done.ExitCode, done.Pid, st.Pid)
		}
		if data, _ := os.ReadFile(out.Name()); string(data) != "hi\n" {
			t.Errorf("%s wrote %q", id, data)
		}
	}

	// An executable the kernel refuses (ENOEXEC): found by the setup,
	// refused at the exec, after the create.
	id := name + "-noexec"
	remove(id)
	b := bundle(t, nil, "/bad")
	if err := os.WriteFile(filepath.Join(b, "rootfs", "bad"), []byte("not a program\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, created, err := api.CreateAndStart(ctx, id, b, executor.CreateOptions{})
	if err == nil || !created {
		t.Fatalf("CreateAndStart of a bad executable: created %v, %v", created, err)
	}
	if !strings.Contains(err.Error(), "exec format error") {
		t.Errorf("error does not say why the exec failed: %v", err)
	}
	if _, err := api.State(ctx, id); err == nil {
		t.Errorf("container %s still there after its failed exec", id)
	}

	// A hard limit above fs.nr_open: prlimit fails in the init's last
	// chunk, after the container was recorded created.
	id = name + "-rlimit"
	remove(id)
	b = bundle(t, func(s *specs.Spec) {
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1 << 40, Soft: 1024}}
	}, "true")
	_, created, err = api.CreateAndStart(ctx, id, b, executor.CreateOptions{})
	if err == nil || created {
		t.Fatalf("CreateAndStart with RLIMIT_NOFILE above nr_open: created %v, %v", created, err)
	}
	if !strings.Contains(err.Error(), "RLIMIT_NOFILE") {
		t.Errorf("error does not name the limit: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r.root, id)); !os.IsNotExist(err) {
		t.Errorf("state directory left after the failed create: %v", err)
	}
}
