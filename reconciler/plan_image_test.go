package reconciler

import (
	"testing"
	"time"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
)

// image makes a container run ref; with digest "" it is unresolved and
// wait says why.
func image(ref, digest, wait string, failed bool) func(*desired.Container) {
	return func(c *desired.Container) {
		c.Image, c.ImageDigest, c.ImageWait, c.ImageFailed = ref, digest, wait, failed
		if digest == "" {
			c.Hash, c.BaseHash = "", ""
		}
	}
}

func TestPlanImages(t *testing.T) {
	const ref = "docker.io/library/busybox:latest"
	pulling := def("web", image(ref, "", "pulling "+ref+": 1.0 of 2.0 MB", false))
	failed := def("web", image(ref, "", "failed to pull "+ref+": manifest unknown; next try in 4s", true))
	old := def("web", image("docker.io/library/busybox:1.35", "sha256:old", "", false))
	newer := def("web", image(ref, "sha256:new", "", false), hash("h2", "b2"))
	planner := Planner{ChangedFields: func(o, n *desired.Container) []string {
		if o.ImageDigest != n.ImageDigest {
			return []string{"spec.image digest"}
		}
		return nil
	}}

	tests := []struct {
		name string
		want desired.Set
		have actual.Set
		out  string
	}{
		{
			name: "new container waits for its pull: phase pulling, nothing created",
			want: want(pulling),
			out:  "web pulling \"pulling " + ref + ": 1.0 of 2.0 MB\"\n",
		},
		{
			name: "a failed pull is a backoff of that container",
			want: want(failed),
			out:  "web backoff \"failed to pull " + ref + ": manifest unknown; next try in 4s\"\n",
		},
		{
			name: "a changed image being pulled leaves the old container running",
			want: want(pulling),
			have: have(running(old)),
			out:  "web running \"pulling " + ref + ": 1.0 of 2.0 MB\"\n",
		},
		{
			name: "a failed pull leaves the old container running with the error",
			want: want(failed),
			have: have(running(old)),
			out:  "web running \"failed to pull " + ref + ": manifest unknown; next try in 4s\"\n",
		},
		{
			name: "the old container exits meanwhile: restarted as it was",
			want: want(pulling),
			have: have(running(old, exited(1, time.Hour, time.Minute))),
			// The old definition, not the wanted one, is created again.
			out: `web exited "pulling ` + ref + `: 1.0 of 2.0 MB; restarted: exited with 1, policy always"
  delete: restarted: exited with 1, policy always
  create NOT WANTED DEFINITION restarts=1 failures=1: restarted: exited with 1, policy always
  start: restarted: exited with 1, policy always
`,
		},
		{
			name: "once resolved to a new digest: recreated",
			want: want(newer),
			have: have(running(def("web", image(ref, "sha256:old", "", false)))),
			out: `web running "recreated: spec.image digest changed"
  stop SIGTERM 10s: recreated: spec.image digest changed
  delete: recreated: spec.image digest changed
  create: recreated: spec.image digest changed
  start: recreated: spec.image digest changed
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := render(planner.Plan(tt.want, tt.have, now))
			if got != tt.out {
				t.Errorf("plan:\n%s\nwant:\n%s", got, tt.out)
			}
			for _, a := range planner.Plan(tt.want, tt.have, now).Actions() {
				if a.Kind == Create && a.Desired.Unresolved() {
					t.Errorf("create from an unresolved image: %v", a)
				}
			}
		})
	}
}
