package executor

import (
	"testing"
	"time"
)

// The reaper's record reads back as the Go monitor's exit.json did: exit
// code, 128+signal with its name, 255 when the wait failed, and an OOM
// kill only when the counter grew since the container was created.
func TestReaperExit(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		oomAtStart uint64
		want       exitRecord
	}{
		{"exit 3, v2 counter unchanged", "reconciled-exit 1\nstatus 768\ntime 10 20\nlow 0\noom_kill 1\n", 1,
			exitRecord{Finished: time.Unix(10, 20).UTC(), ExitCode: 3}},
		{"SIGKILL, v1 counter grew", "reconciled-exit 1\nstatus 9\ntime 10 20\noom_kill_disable 0\nunder_oom 0\noom_kill 2\n", 1,
			exitRecord{Finished: time.Unix(10, 20).UTC(), ExitCode: 137, ExitSignal: "SIGKILL", OOMKilled: true}},
		{"wait failed, no counter", "reconciled-exit 1\ntime 10 20\n", 0,
			exitRecord{Finished: time.Unix(10, 20).UTC(), ExitCode: 255}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := reaperExit([]byte(tc.data), tc.oomAtStart)
			if err != nil || got != tc.want {
				t.Errorf("reaperExit = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	if _, err := reaperExit([]byte(`{"exitCode":0}`), 0); err == nil {
		t.Error("a JSON exit record was taken for the reaper's")
	}
}
