package reconciler

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
)

// now is the planner's clock in every test.
var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) time.Time { return now.Add(-d) }

// def is a wanted container from /m/NAME.yaml; opts adjust it.
func def(name string, opts ...func(*desired.Container)) *desired.Container {
	c := &desired.Container{
		Name:        name,
		Source:      "/m/" + name + ".yaml",
		Hash:        "h1",
		BaseHash:    "b1",
		Restart:     desired.RestartAlways,
		StopSignal:  "SIGTERM",
		StopTimeout: 10 * time.Second,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

func hash(h, base string) func(*desired.Container) {
	return func(c *desired.Container) { c.Hash, c.BaseHash = h, base }
}

func policy(p desired.RestartPolicy) func(*desired.Container) {
	return func(c *desired.Container) { c.Restart = p }
}

func from(path string) func(*desired.Container) {
	return func(c *desired.Container) { c.Source = path }
}

// running is a container created from d whose init is alive, started an
// hour ago; opts adjust it.
func running(d *desired.Container, opts ...func(*actual.Container)) *actual.Container {
	c := &actual.Container{
		Name:           d.Name,
		Status:         actual.StatusRunning,
		Pid:            4242,
		PidStartTime:   123456,
		InitAlive:      true,
		CgroupHasProcs: true,
		Created:        ago(time.Hour),
		Started:        ago(time.Hour),
		SpecHash:       d.Hash,
		BaseHash:       d.BaseHash,
		Record:         actual.Record{Applied: d},
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// exited makes a container's init have exited with code, ran for ran,
// finished finishedAgo ago; the cgroup is empty.
func exited(code int, ran, finishedAgo time.Duration) func(*actual.Container) {
	return func(c *actual.Container) {
		c.Status = actual.StatusStopped
		c.InitAlive, c.CgroupHasProcs = false, false
		c.Exited, c.ExitCode = true, code
		c.Finished = ago(finishedAgo)
		c.Started = c.Finished.Add(-ran)
	}
}

func withFailures(n int) func(*actual.Container) {
	return func(c *actual.Container) { c.Failures = n }
}

func withRestarts(n int) func(*actual.Container) {
	return func(c *actual.Container) { c.Restarts = n }
}

func want(cs ...*desired.Container) desired.Set {
	s := desired.Set{Containers: map[string]*desired.Container{}, Files: map[string]*desired.FileStatus{}}
	for _, c := range cs {
		s.Containers[c.Name] = c
		f := s.Files[c.Source]
		if f == nil {
			f = &desired.FileStatus{Path: c.Source}
			s.Files[c.Source] = f
		}
		f.Containers = append(f.Containers, c.Name)
	}
	return s
}

// invalid marks path invalid in s, defining names, with one error.
func invalid(s desired.Set, path string, msg string, names ...string) desired.Set {
	f := s.Files[path]
	if f == nil {
		f = &desired.FileStatus{Path: path, Containers: names}
		s.Files[path] = f
	}
	f.Errors = append(f.Errors, &desired.Error{File: path, Line: 3, Msg: msg})
	return s
}

func have(cs ...*actual.Container) actual.Set {
	s := actual.Set{}
	for _, c := range cs {
		s[c.Name] = c
	}
	return s
}

// render writes a plan in lines that tests compare:
//
//	web running "reason" next=+40s errors=1
//	  stop SIGTERM 10s: reason
//
// Times are written relative to now.
func render(r *Result) string {
	var b strings.Builder
	for _, c := range r.Containers {
		st := c.Status
		fmt.Fprintf(&b, "%s %s %q", st.Name, st.Phase, st.Reason)
		if !st.NextTry.IsZero() {
			fmt.Fprintf(&b, " next=+%s", st.NextTry.Sub(now))
		}
		if st.Restarts != 0 {
			fmt.Fprintf(&b, " restarts=%d", st.Restarts)
		}
		if len(st.Errors) > 0 {
			var msgs []string
			for _, e := range st.Errors {
				msgs = append(msgs, e.Msg)
			}
			fmt.Fprintf(&b, " errors=%q", msgs)
		}
		b.WriteByte('\n')
		for _, a := range c.Actions {
			if a.Container != st.Name {
				fmt.Fprintf(&b, "  BAD CONTAINER %q\n", a.Container)
			}
			b.WriteString("  " + string(a.Kind))
			switch a.Kind {
			case Create:
				if a.Desired == nil {
					b.WriteString(" NO DESIRED")
				} else if a.Desired != st.Desired {
					b.WriteString(" NOT WANTED DEFINITION")
				}
				if a.Restarts != 0 || a.Failures != 0 {
					fmt.Fprintf(&b, " restarts=%d failures=%d", a.Restarts, a.Failures)
				}
			case Update:
				if a.Desired != st.Desired {
					b.WriteString(" NOT WANTED DEFINITION")
				}
			case Stop:
				fmt.Fprintf(&b, " %s %s", a.Signal, a.Timeout)
				if a.All {
					b.WriteString(" all")
				}
			case Delete:
				if a.Forget {
					b.WriteString(" forget")
				}
			case Wait:
				fmt.Fprintf(&b, " +%s", a.Until.Sub(now))
			}
			b.WriteString(": " + a.Reason + "\n")
		}
	}
	if !r.Wake.IsZero() {
		fmt.Fprintf(&b, "wake +%s\n", r.Wake.Sub(now))
	}
	return b.String()
}

// fieldsStub stands in for desired.ChangedFields.
func fieldsStub(old, new *desired.Container) []string {
	switch {
	case old.BaseHash != new.BaseHash:
		return []string{"spec.command"}
	case old.Hash != new.Hash:
		return []string{"spec.resources.memory"}
	}
	return nil
}

func TestPlan(t *testing.T) {
	web := def("web")
	web2 := def("web", hash("h2", "b2"))   // command changed
	webMem := def("web", hash("h2", "b1")) // resources changed
	onFail := def("job", policy(desired.RestartOnFailure))
	never := def("job", policy(desired.RestartNever))
	always := def("job")

	tests := []struct {
		name    string
		want    desired.Set
		have    actual.Set
		planner Planner
		out     string
	}{
		// New, adopted, removed.
		{
			name: "new manifest: create and start",
			want: want(web),
			out: `web pending "created: new manifest web.yaml"
  create: created: new manifest web.yaml
  start: created: new manifest web.yaml
`,
		},
		{
			name: "adopted after daemon restart: nothing to do",
			want: want(web),
			have: have(running(web)),
			out:  "web running \"\"\n",
		},
		{
			name: "paused container is adopted as it is",
			want: want(web),
			have: have(running(web, func(c *actual.Container) { c.Paused = true })),
			out:  "web running \"paused\"\n",
		},
		{
			name: "manifest removed: stop with its stop signal, then delete",
			want: want(),
			have: have(running(def("web", func(c *desired.Container) {
				c.StopSignal, c.StopTimeout = "SIGQUIT", 30*time.Second
			}))),
			out: `web running "deleted: manifest removed"
  stop SIGQUIT 30s: deleted: manifest removed
  delete forget: deleted: manifest removed
`,
		},
		{
			name: "manifest removed, definition unknown: default stop",
			want: want(),
			have: have(running(web, func(c *actual.Container) { c.Applied = nil })),
			out: `web running "deleted: manifest removed"
  stop SIGTERM 10s: deleted: manifest removed
  delete forget: deleted: manifest removed
`,
		},
		{
			name: "manifest removed while exited: delete only",
			want: want(),
			have: have(running(web, exited(0, time.Minute, time.Minute))),
			out: `web exited "deleted: manifest removed"
  delete forget: deleted: manifest removed
`,
		},
		{
			name: "manifest removed, init gone, processes left: kill them, delete",
			want: want(),
			have: have(running(web, func(c *actual.Container) { c.InitAlive = false })),
			out: `web exited "deleted: manifest removed"
  stop SIGKILL 0s all: stopped: init exited, killing the processes it left behind
  delete forget: deleted: manifest removed
`,
		},

		// Spec changes.
		{
			name: "spec changed: stop with the old stop signal, delete, create, start",
			want: want(def("web", hash("h2", "b2"), func(c *desired.Container) { c.StopSignal = "SIGINT" })),
			have: have(running(def("web", func(c *desired.Container) {
				c.StopSignal, c.StopTimeout = "SIGQUIT", 3*time.Second
			}))),
			out: `web running "recreated: spec changed"
  stop SIGQUIT 3s: recreated: spec changed
  delete: recreated: spec changed
  create: recreated: spec changed
  start: recreated: spec changed
`,
		},
		{
			name:    "spec changed: reason names the fields",
			want:    want(web2),
			have:    have(running(web, withRestarts(3), withFailures(2))),
			planner: Planner{ChangedFields: fieldsStub},
			out: `web running "recreated: spec.command changed" restarts=3
  stop SIGTERM 10s: recreated: spec.command changed
  delete: recreated: spec.command changed
  create: recreated: spec.command changed
  start: recreated: spec.command changed
`,
		},
		{
			name: "many fields changed",
			want: want(web2),
			have: have(running(web)),
			planner: Planner{ChangedFields: func(_, _ *desired.Container) []string {
				return []string{"spec.command", "spec.env", "spec.user", "restart", "stopSignal"}
			}},
			out: `web running "recreated: spec.command, spec.env, spec.user and 2 more changed"
  stop SIGTERM 10s: recreated: spec.command, spec.env, spec.user and 2 more changed
  delete: recreated: spec.command, spec.env, spec.user and 2 more changed
  create: recreated: spec.command, spec.env, spec.user and 2 more changed
  start: recreated: spec.command, spec.env, spec.user and 2 more changed
`,
		},
		{
			name: "hash of the running definition unknown: recreate",
			want: want(web),
			have: have(running(web, func(c *actual.Container) { c.SpecHash, c.BaseHash, c.Applied = "", "", nil })),
			out: `web running "recreated: the definition it runs is unknown"
  stop SIGTERM 10s: recreated: the definition it runs is unknown
  delete: recreated: the definition it runs is unknown
  create: recreated: the definition it runs is unknown
  start: recreated: the definition it runs is unknown
`,
		},
		{
			name:    "only resources changed: update in place",
			want:    want(webMem),
			have:    have(running(web)),
			planner: Planner{ChangedFields: fieldsStub},
			out: `web running "updated in place: spec.resources.memory changed"
  update: updated in place: spec.resources.memory changed
`,
		},
		{
			name: "only resources changed, fields unknown",
			want: want(webMem),
			have: have(running(web)),
			out: `web running "updated in place: spec changed"
  update: updated in place: spec changed
`,
		},
		{
			name:    "only resources changed, created and never started: update, start",
			want:    want(webMem),
			have:    have(running(web, func(c *actual.Container) { c.Status = actual.StatusCreated })),
			planner: Planner{ChangedFields: fieldsStub},
			out: `web creating "updated in place: spec.resources.memory changed"
  update: updated in place: spec.resources.memory changed
  start: started: created but never started
`,
		},
		{
			name: "only resources changed while exited, policy never: nothing",
			want: want(def("job", hash("h2", "b1"), policy(desired.RestartNever))),
			have: have(running(never, exited(1, time.Minute, time.Minute))),
			out:  "job exited \"not restarted: exited with 1, policy never\"\n",
		},
		{
			name: "only resources changed while exited: restart creates the new definition",
			want: want(def("job", hash("h2", "b1"))),
			have: have(running(always, exited(1, time.Minute, time.Minute))),
			out: `job exited "restarted: exited with 1, policy always"
  delete: restarted: exited with 1, policy always
  create restarts=1 failures=1: restarted: exited with 1, policy always
  start: restarted: exited with 1, policy always
`,
		},
		{
			name: "spec changed while exited with policy never: run the new one",
			want: want(def("job", hash("h2", "b2"), policy(desired.RestartNever))),
			have: have(running(never, exited(0, time.Minute, time.Minute))),
			out: `job exited "recreated: spec changed"
  delete: recreated: spec changed
  create: recreated: spec changed
  start: recreated: spec changed
`,
		},
		{
			name: "spec changed during backoff: recreate at once, counts reset",
			want: want(def("job", hash("h2", "b2"))),
			have: have(running(always, exited(1, time.Second, time.Second), withFailures(6), withRestarts(6))),
			out: `job exited "recreated: spec changed" restarts=6
  delete: recreated: spec changed
  create: recreated: spec changed
  start: recreated: spec changed
`,
		},

		// Half-written state.
		{
			name: "recorded creating: clean up and redo, counts kept",
			want: want(web),
			have: have(running(web, withRestarts(2), withFailures(1), func(c *actual.Container) {
				c.Status, c.InitAlive, c.CgroupHasProcs, c.Pid = actual.StatusCreating, false, false, 0
			})),
			out: `web creating "recreated: left half-created" restarts=2
  delete: recreated: left half-created
  create restarts=2 failures=1: recreated: left half-created
  start: recreated: left half-created
`,
		},
		{
			name: "recorded creating, init left in the cgroup: kill it first",
			want: want(web),
			have: have(running(web, func(c *actual.Container) {
				c.Status, c.InitAlive, c.CgroupHasProcs = actual.StatusCreating, false, true
			})),
			out: `web creating "recreated: left half-created"
  stop SIGKILL 0s all: stopped: init exited, killing the processes it left behind
  delete: recreated: left half-created
  create: recreated: left half-created
  start: recreated: left half-created
`,
		},
		{
			name: "exited without ever starting (create cut short by a killed daemon): redo, not a restart",
			want: want(web),
			have: have(running(web, withRestarts(2), exited(137, 0, time.Second), func(c *actual.Container) {
				c.Started = time.Time{}
			})),
			out: `web creating "recreated: left half-created" restarts=2
  delete: recreated: left half-created
  create restarts=2 failures=0: recreated: left half-created
  start: recreated: left half-created
`,
		},
		{
			name: "exited without ever starting, policy never: still redone (it never ran)",
			want: want(def("job", func(d *desired.Container) { d.Restart = desired.RestartNever })),
			have: have(running(def("job", func(d *desired.Container) { d.Restart = desired.RestartNever }), exited(137, 0, time.Second), func(c *actual.Container) {
				c.Started = time.Time{}
			})),
			out: `job creating "recreated: left half-created"
  delete: recreated: left half-created
  create: recreated: left half-created
  start: recreated: left half-created
`,
		},
		{
			name: "paused container whose manifest changed: the change waits for resume",
			want: want(def("web", hash("h2", "b2"))),
			have: have(running(web, func(c *actual.Container) { c.Paused = true })),
			out: `web running "paused: change pending"
  wait +1s: paused: change pending
wake +1s
`,
		},
		{
			name: "paused container whose resources changed: the change waits too",
			want: want(def("web", hash("h2", "b1"))),
			have: have(running(web, func(c *actual.Container) { c.Paused = true })),
			out: `web running "paused: change pending"
  wait +1s: paused: change pending
wake +1s
`,
		},
		{
			name: "created with no live init: clean up and redo",
			want: want(web),
			have: have(running(web, func(c *actual.Container) {
				c.Status, c.InitAlive, c.CgroupHasProcs = actual.StatusCreated, false, false
			})),
			out: `web creating "recreated: left half-created"
  delete: recreated: left half-created
  create: recreated: left half-created
  start: recreated: left half-created
`,
		},
		{
			name: "created, init alive, never started: start",
			want: want(web),
			have: have(running(web, func(c *actual.Container) { c.Status, c.Started = actual.StatusCreated, time.Time{} })),
			out: `web creating "started: created but never started"
  start: started: created but never started
`,
		},

		// Stopping.
		{
			name: "stop under way, manifest removed: keep its deadline",
			want: want(),
			have: have(running(web, func(c *actual.Container) { c.StopRequested = ago(4 * time.Second) })),
			out: `web stopping "deleted: manifest removed"
  stop SIGTERM 6s: deleted: manifest removed
  delete forget: deleted: manifest removed
`,
		},
		{
			name: "stop under way past its deadline: SIGKILL",
			want: want(),
			have: have(running(web, func(c *actual.Container) { c.StopRequested = ago(time.Minute) })),
			out: `web stopping "deleted: manifest removed"
  stop SIGKILL 0s: deleted: manifest removed
  delete forget: deleted: manifest removed
`,
		},
		{
			name: "stop under way for a change: finish it and recreate",
			want: want(web2),
			have: have(running(web, func(c *actual.Container) { c.StopRequested = ago(time.Second) })),
			out: `web stopping "recreated: spec changed"
  stop SIGTERM 9s: recreated: spec changed
  delete: recreated: spec changed
  create: recreated: spec changed
  start: recreated: spec changed
`,
		},
		{
			name: "stopped by us, change reverted: not a policy exit, bring it back",
			want: want(def("job", policy(desired.RestartNever))),
			have: have(running(never, exited(143, time.Hour, time.Second), withRestarts(1),
				func(c *actual.Container) { c.StopRequested = ago(2 * time.Second) })),
			out: `job exited "recreated: a stop was under way" restarts=1
  delete: recreated: a stop was under way
  create restarts=1 failures=0: recreated: a stop was under way
  start: recreated: a stop was under way
`,
		},

		// Exits and restart policies.
		{
			name: "policy always, exit 0: restart",
			want: want(always),
			have: have(running(always, exited(0, time.Minute, 5*time.Second))),
			out: `job exited "restarted: exited with 0, policy always"
  delete: restarted: exited with 0, policy always
  create restarts=1 failures=1: restarted: exited with 0, policy always
  start: restarted: exited with 0, policy always
`,
		},
		{
			name: "policy on-failure, exit 1: restart",
			want: want(onFail),
			have: have(running(onFail, exited(1, time.Minute, 5*time.Second), withRestarts(4))),
			out: `job exited "restarted: exited with 1, policy on-failure" restarts=4
  delete: restarted: exited with 1, policy on-failure
  create restarts=5 failures=1: restarted: exited with 1, policy on-failure
  start: restarted: exited with 1, policy on-failure
`,
		},
		{
			name: "policy on-failure, exit 0: stays exited",
			want: want(onFail),
			have: have(running(onFail, exited(0, time.Minute, 5*time.Second))),
			out:  "job exited \"not restarted: exited with 0, policy on-failure\"\n",
		},
		{
			name: "policy on-failure, OOM kill: restart",
			want: want(onFail),
			have: have(running(onFail, exited(137, time.Minute, 5*time.Second), func(c *actual.Container) { c.OOMKilled = true })),
			out: `job exited "restarted: killed by the OOM killer, policy on-failure"
  delete: restarted: killed by the OOM killer, policy on-failure
  create restarts=1 failures=1: restarted: killed by the OOM killer, policy on-failure
  start: restarted: killed by the OOM killer, policy on-failure
`,
		},
		{
			name: "policy on-failure, OOM kill with exit 0 still counts",
			want: want(onFail),
			have: have(running(onFail, exited(0, time.Minute, 5*time.Second), func(c *actual.Container) { c.OOMKilled = true })),
			out: `job exited "restarted: killed by the OOM killer, policy on-failure"
  delete: restarted: killed by the OOM killer, policy on-failure
  create restarts=1 failures=1: restarted: killed by the OOM killer, policy on-failure
  start: restarted: killed by the OOM killer, policy on-failure
`,
		},
		{
			name: "policy never, exit 1: stays exited",
			want: want(never),
			have: have(running(never, exited(1, time.Minute, 5*time.Second))),
			out:  "job exited \"not restarted: exited with 1, policy never\"\n",
		},
		{
			name: "empty policy means always; signal exit named",
			want: want(def("job", policy(""))),
			have: have(running(always, exited(143, time.Minute, 5*time.Second))),
			out: `job exited "restarted: exited with 143 (SIGTERM), policy always"
  delete: restarted: exited with 143 (SIGTERM), policy always
  create restarts=1 failures=1: restarted: exited with 143 (SIGTERM), policy always
  start: restarted: exited with 143 (SIGTERM), policy always
`,
		},
		{
			name: "exited while the daemon was down, status unknown: on-failure restarts",
			want: want(onFail),
			have: have(running(onFail, func(c *actual.Container) { c.InitAlive, c.CgroupHasProcs = false, false })),
			out: `job exited "restarted: exited (status unknown), policy on-failure"
  delete: restarted: exited (status unknown), policy on-failure
  create restarts=1 failures=1: restarted: exited (status unknown), policy on-failure
  start: restarted: exited (status unknown), policy on-failure
`,
		},
		{
			name: "recorded running but the PID is someone else's: exited",
			want: want(never),
			have: have(running(never, func(c *actual.Container) {
				c.InitAlive, c.CgroupHasProcs = false, false // PID reused: start time differs
			})),
			out: "job exited \"not restarted: exited (status unknown), policy never\"\n",
		},
		{
			name: "exited with processes left, policy never: kill them, keep it",
			want: want(never),
			have: have(running(never, exited(0, time.Minute, time.Second), func(c *actual.Container) { c.CgroupHasProcs = true })),
			out: `job exited "not restarted: exited with 0, policy never"
  stop SIGKILL 0s all: stopped: init exited, killing the processes it left behind
`,
		},

		// Crash-loop backoff.
		{
			name: "first quick exit: wait 1s",
			want: want(always),
			have: have(running(always, exited(1, time.Second, 0))),
			out: `job backoff "backoff: next try in 1s" next=+1s
  wait +1s: backoff: next try in 1s
wake +1s
`,
		},
		{
			name: "backoff doubles: 7th quick exit waits 64s, 24s gone",
			want: want(always),
			have: have(running(always, exited(1, time.Second, 24*time.Second), withFailures(6), withRestarts(6))),
			out: `job backoff "backoff: next try in 40s" next=+40s restarts=6
  wait +40s: backoff: next try in 40s
wake +40s
`,
		},
		{
			name: "backoff capped at 5m",
			want: want(always),
			have: have(running(always, exited(1, time.Second, 0), withFailures(30))),
			out: `job backoff "backoff: next try in 5m0s" next=+5m0s
  wait +5m0s: backoff: next try in 5m0s
wake +5m0s
`,
		},
		{
			name: "backoff over: restart, failure count recorded",
			want: want(always),
			have: have(running(always, exited(1, time.Second, 65*time.Second), withFailures(6), withRestarts(6))),
			out: `job exited "restarted: exited with 1, policy always" restarts=6
  delete: restarted: exited with 1, policy always
  create restarts=7 failures=7: restarted: exited with 1, policy always
  start: restarted: exited with 1, policy always
`,
		},
		{
			name: "ran 10 minutes: backoff reset to 1s",
			want: want(always),
			have: have(running(always, exited(1, 10*time.Minute, 0), withFailures(8))),
			out: `job backoff "backoff: next try in 1s" next=+1s
  wait +1s: backoff: next try in 1s
wake +1s
`,
		},
		{
			name: "ran just under 10 minutes: no reset",
			want: want(always),
			have: have(running(always, exited(1, 10*time.Minute-time.Second, 0), withFailures(2))),
			out: `job backoff "backoff: next try in 4s" next=+4s
  wait +4s: backoff: next try in 4s
wake +4s
`,
		},
		{
			name: "backoff with processes left: kill them, then wait",
			want: want(always),
			have: have(running(always, exited(1, time.Second, 0), func(c *actual.Container) { c.CgroupHasProcs = true })),
			out: `job backoff "backoff: next try in 1s" next=+1s
  stop SIGKILL 0s all: stopped: init exited, killing the processes it left behind
  wait +1s: backoff: next try in 1s
wake +1s
`,
		},
		{
			name: "policy never is never in backoff",
			want: want(never),
			have: have(running(never, exited(1, time.Second, 0), withFailures(3))),
			out:  "job exited \"not restarted: exited with 1, policy never\"\n",
		},

		// Invalid files.
		{
			name: "file invalid: its container kept as it is, error surfaced",
			want: invalid(want(web), "/m/web.yaml", "spec.resources.memory: \"12XB\" is not a quantity"),
			have: have(running(web)),
			out:  "web running \"kept: web.yaml is invalid\" errors=[\"spec.resources.memory: \\\"12XB\\\" is not a quantity\"]\n",
		},
		{
			name: "file invalid: an exit is still handled by policy",
			want: invalid(want(always), "/m/job.yaml", "bad"),
			have: have(running(always, exited(1, time.Second, 0))),
			out: `job backoff "backoff: next try in 1s; kept: job.yaml is invalid" next=+1s errors=["bad"]
  wait +1s: backoff: next try in 1s
wake +1s
`,
		},
		{
			name: "file invalid but container missing from want: never removed",
			want: invalid(want(), "/m/web.yaml", "bad", "web"),
			have: have(running(web)),
			out:  "web running \"kept: web.yaml is invalid\" errors=[\"bad\"]\n",
		},
		{
			name: "new file invalid from the start: invalid, nothing created",
			want: invalid(want(), "/m/new.yaml", "spec.image: required", "new"),
			out:  "new invalid \"invalid: new.yaml has errors\" errors=[\"spec.image: required\"]\n",
		},
		{
			name: "duplicate name across files: the first one runs, the other's error shown",
			want: invalid(want(def("web", from("/m/a.yaml"))), "/m/b.yaml", "duplicate container name \"web\" (also in a.yaml)", "web"),
			have: have(running(def("web", from("/m/a.yaml")))),
			out:  "web running \"b.yaml is invalid\" errors=[\"duplicate container name \\\"web\\\" (also in a.yaml)\"]\n",
		},
		{
			name: "duplicate name across files, not created yet: created from the winner",
			want: invalid(want(def("web", from("/m/a.yaml"))), "/m/b.yaml", "duplicate", "web"),
			out: `web pending "created: new manifest a.yaml; b.yaml is invalid" errors=["duplicate"]
  create: created: new manifest a.yaml
  start: created: new manifest a.yaml
`,
		},

		// Several containers.
		{
			name: "several containers: sorted, independent, earliest wake",
			want: want(def("c"), def("a", hash("h2", "b2")), def("d"), def("e")),
			have: have(
				running(def("a")),
				running(def("b")),
				running(def("d"), exited(1, time.Second, 0), withFailures(2)),
				running(def("e"), exited(1, time.Second, 0)),
			),
			out: `a running "recreated: spec changed"
  stop SIGTERM 10s: recreated: spec changed
  delete: recreated: spec changed
  create: recreated: spec changed
  start: recreated: spec changed
b running "deleted: manifest removed"
  stop SIGTERM 10s: deleted: manifest removed
  delete forget: deleted: manifest removed
c pending "created: new manifest c.yaml"
  create: created: new manifest c.yaml
  start: created: new manifest c.yaml
d backoff "backoff: next try in 4s" next=+4s
  wait +4s: backoff: next try in 4s
e backoff "backoff: next try in 1s" next=+1s
  wait +1s: backoff: next try in 1s
wake +1s
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.planner.Plan(tt.want, tt.have, now)
			if got := render(r); got != tt.out {
				t.Errorf("plan:\n%s\nwant:\n%s", got, tt.out)
			}
			// Pure: the same input gives the same plan.
			if again := tt.planner.Plan(tt.want, tt.have, now); !reflect.DeepEqual(r, again) {
				t.Errorf("second plan differs")
			}
		})
	}
}

// TestPlanDaemonRestart runs the whole daemon-restart story at once: every
// container that checks out is adopted untouched; the others are handled.
func TestPlanDaemonRestart(t *testing.T) {
	web, db, job, gone, half := def("web"), def("db"), def("job", policy(desired.RestartOnFailure)), def("gone"), def("half")
	r := Plan(
		want(web, db, job, half),
		have(
			running(web),
			running(db, func(c *actual.Container) { c.Started = ago(30 * 24 * time.Hour) }),
			running(job, exited(2, time.Hour, time.Hour)),
			running(gone),
			running(half, func(c *actual.Container) {
				c.Status, c.InitAlive, c.CgroupHasProcs = actual.StatusCreating, false, false
			}),
		),
		now,
	)
	got := render(r)
	out := `db running ""
gone running "deleted: manifest removed"
  stop SIGTERM 10s: deleted: manifest removed
  delete forget: deleted: manifest removed
half creating "recreated: left half-created"
  delete: recreated: left half-created
  create: recreated: left half-created
  start: recreated: left half-created
job exited "restarted: exited with 2, policy on-failure"
  delete: restarted: exited with 2, policy on-failure
  create restarts=1 failures=1: restarted: exited with 2, policy on-failure
  start: restarted: exited with 2, policy on-failure
web running ""
`
	if got != out {
		t.Errorf("plan:\n%s\nwant:\n%s", got, out)
	}
	if p := r.Get("web"); p == nil || len(p.Actions) != 0 {
		t.Errorf("Get(web) = %+v, want no actions", p)
	}
	if p := r.Get("nope"); p != nil {
		t.Errorf("Get(nope) = %+v, want nil", p)
	}
	if n := len(r.Actions()); n != 8 {
		t.Errorf("Actions() has %d, want 8", n)
	}
}

func TestNextDelay(t *testing.T) {
	for _, tt := range []struct {
		failures int
		want     time.Duration
	}{
		{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second},
		{7, 64 * time.Second}, {9, 256 * time.Second}, {10, 5 * time.Minute},
		{11, 5 * time.Minute}, {1000, 5 * time.Minute},
	} {
		if got := NextDelay(tt.failures); got != tt.want {
			t.Errorf("NextDelay(%d) = %s, want %s", tt.failures, got, tt.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	c := &actual.Container{Started: ago(time.Minute), Finished: ago(time.Second), Record: actual.Record{Failures: 2}}
	if f, next := Backoff(c); f != 3 || !next.Equal(ago(time.Second).Add(4*time.Second)) {
		t.Errorf("Backoff = %d, %s", f, next)
	}
	c.Finished = time.Time{}
	if f, next := Backoff(c); f != 3 || !next.IsZero() {
		t.Errorf("Backoff with unknown finish = %d, %s; want no wait", f, next)
	}
}

func TestActionString(t *testing.T) {
	for _, tt := range []struct {
		a    Action
		want string
	}{
		{Action{Kind: Stop, Container: "web", Signal: "SIGTERM", Timeout: 10 * time.Second, Reason: "deleted: manifest removed"},
			"stop web SIGTERM 10s: deleted: manifest removed"},
		{Action{Kind: Create, Container: "web", Restarts: 2, Failures: 1, Reason: "restarted: exited with 1, policy always"},
			"create web restarts=2 failures=1: restarted: exited with 1, policy always"},
		{Action{Kind: Delete, Container: "web", Forget: true}, "delete web forget"},
		{Action{Kind: Wait, Container: "web", Until: now.Add(40 * time.Second)}, "wait web until 2025-06-01T12:00:40Z"},
	} {
		if got := tt.a.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}
