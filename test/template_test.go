package test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/internal/testutil"
)

// A Runtime with spares sets a container up in a mount namespace made
// from a template (an empty read-only tmpfs), attaching the rootfs over
// its root instead of pivoting into it. The container sees the same mounts
// as one set up with pivot_root (a copy of the host's mount namespace),
// none of the host's; its bind mount and its read-only root work; exec
// lands in its root. So for a cold create and for a spare's.
func TestMountNamespaceFromTemplate(t *testing.T) {
	r := newRT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "hello"), []byte("hello from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := "cat /proc/self/mountinfo; echo ---; cat /data/hello; touch /x 2>/dev/null || echo read-only root; ls /"
	b := bundle(t, func(s *specs.Spec) {
		s.Root.Readonly = true
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: data, Options: []string{"rbind", "ro"}})
	}, "sh", "-c", script)

	run := func(api *executor.Runtime, id string) string {
		t.Helper()
		out, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		t.Cleanup(func() { api.Delete(context.Background(), id, true) })
		if err := api.Create(ctx, id, b, executor.CreateOptions{Stdout: out, Stderr: out}); err != nil {
			t.Fatalf("create %s: %v", id, err)
		}
		if err := api.Start(ctx, id); err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
		if st, err := api.Wait(ctx, id); err != nil || st.ExitCode != 0 {
			o, _ := os.ReadFile(out.Name())
			t.Fatalf("%s: %+v, %v\n%s", id, st, err, o)
		}
		o, _ := os.ReadFile(out.Name())
		return string(o)
	}
	// mounts are the mount points, filesystem types and per-mount flags
	// of a mountinfo, sorted (the kernel lists a namespace's mounts by
	// ID: the bind's tree, cloned before the setup, comes first from the
	// template); the rest is what the script printed.
	mounts := func(out string) ([]string, string) {
		info, rest, ok := strings.Cut(out, "---\n")
		if !ok {
			t.Fatalf("no mountinfo in %q", out)
		}
		var ms []string
		for _, line := range strings.Split(strings.TrimSpace(info), "\n") {
			f := strings.Fields(line)
			_, post, _ := strings.Cut(line, " - ")
			ms = append(ms, f[4]+" "+strings.Fields(post)[0]+" "+f[5])
		}
		slices.Sort(ms)
		return ms, rest
	}

	pivot, err := executor.New(filepath.Join(t.TempDir(), "pivot"))
	if err != nil {
		t.Fatal(err)
	}
	want, wantRest := mounts(run(pivot, testutil.Name(t, 30)+"-pivot"))
	if !strings.HasPrefix(wantRest, "hello from the host\nread-only root\n") {
		t.Fatalf("with pivot_root the container printed %q", wantRest)
	}

	var logs testutil.SyncBuffer
	api, err := executor.New(r.root, executor.WithSpares(1), executor.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { api.Close() })
	for _, id := range []string{testutil.Name(t, 30) + "-cold", testutil.Name(t, 30) + "-spare"} {
		before := len(logs.String())
		got, rest := mounts(run(api, id))
		if log := logs.String()[before:]; !strings.Contains(log, "mount namespace is a copy of the template") {
			t.Errorf("%s: not set up from the mount namespace template; log:\n%s", id, log)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: mounts from the template:\n%s\nwith pivot_root:\n%s", id, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if rest != wantRest {
			t.Errorf("%s: printed %q, with pivot_root %q", id, rest, wantRest)
		}
		if strings.HasSuffix(id, "-cold") {
			waitTitled(t, api, id)
			waitSpares(t, 1)
		}
	}

	// exec joins the container's mount namespace: it lands on its root.
	id := testutil.Name(t, 30) + "-exec"
	sleeper := bundle(t, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: data, Options: []string{"rbind", "ro"}})
	}, "sleep", "600")
	t.Cleanup(func() { api.Delete(context.Background(), id, true) })
	if err := api.Create(ctx, id, sleeper, executor.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := api.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(t.TempDir(), "exec"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	p, err := api.Exec(ctx, id, executor.ExecOptions{Args: []string{"sh", "-c", "cat /data/hello; ls /"}, Stdout: out, Stderr: out})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := p.Wait(ctx); err != nil || st.Code != 0 {
		t.Fatalf("exec: %+v %v", st, err)
	}
	ls := strings.TrimPrefix(wantRest, "hello from the host\nread-only root\n")
	if got, _ := os.ReadFile(out.Name()); string(got) != "hello from the host\n"+ls {
		t.Errorf("exec printed %q, want the bind mount's file and the root's entries %q", got, ls)
	}
}
