package test

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/internal/testutil"
)

// A create that starts its own init (no spare) clones it straight into
// its cgroup2 directory where a cgroup2 hierarchy is mounted (pure v2 and
// hybrid), as crun does, rather than moving it there (a move waits for an
// RCU grace period); the init still ends up in its cgroup in every
// hierarchy.
func TestColdCreateClonesIntoCgroup(t *testing.T) {
	r := newRT(t)
	l, err := cgroups.DetectLayout()
	if err != nil {
		testutil.SkipOrFail(t, "no cgroup hierarchy: %v", err)
	}
	var logs testutil.SyncBuffer
	api, err := executor.New(r.root, executor.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := testutil.Name(t, 40)
	t.Cleanup(func() { api.Delete(context.Background(), id, true) })
	if err := api.Create(ctx, id, bundle(t, nil, "sleep", "600"), executor.CreateOptions{}); err != nil {
		t.Fatalf("create: %v", err)
	}
	st, err := api.State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	cloned := strings.Contains(logs.String(), "cloned into its cgroup2 directory")
	if want := l.Unified != ""; cloned != want {
		t.Errorf("init cloned into its cgroup2 directory: %v, want %v (cgroup2 mounted at %q); log:\n%s", cloned, want, l.Unified, logs.String())
	}
	// Its v1 cgroups it joins itself, by writing 0 to their tasks files:
	// no PID written (cgroups.SelfPlacer).
	joined := strings.Contains(logs.String(), "joins its v1 cgroups itself")
	if want := l.Mode() != cgroups.ModeUnified && l.Unified != ""; joined != want {
		t.Errorf("init joined its v1 cgroups itself: %v, want %v (%v layout); log:\n%s", joined, want, l.Mode(), logs.String())
	}
	if !inCgroupEverywhere(st.Pid, "/"+id) {
		data, _ := os.ReadFile("/proc/" + strconv.Itoa(st.Pid) + "/cgroup")
		t.Errorf("init %d is not in its cgroup /%s everywhere:\n%s", st.Pid, id, data)
	}
}
