package desired

import (
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// spec.userns: auto gives the spec a user namespace (mappings left to the
// daemon), an idmapped root and idmapped bind mounts, changes the hash,
// and is refused where it cannot work, with file:line and the fix.
func TestParseUserns(t *testing.T) {
	const own = `apiVersion: reconciled.dev/v1
kind: Container
metadata:
  name: web
spec:
  root: {path: /srv/web}
  command: [/bin/true]
  mounts: [{type: bind, source: /srv/data, target: /data}]
`
	opts := ParseOptions{SkipHostChecks: true}
	parse := func(src string) *Container {
		t.Helper()
		cs, errs := Parse("web.yaml", []byte(src), opts)
		if len(errs) > 0 || len(cs) != 1 {
			t.Fatalf("%s: %v", src, Errors(errs))
		}
		return cs[0]
	}
	plain := parse(own)
	c := parse(own + "  userns: auto\n")
	if c.Manifest.Spec.Userns != UsernsAuto || c.Spec.Annotations[AnnotationUserns] != UsernsAuto || c.Spec.Annotations[AnnotationIDMapRoot] != "true" {
		t.Fatalf("userns: auto: manifest %q, annotations %v", c.Manifest.Spec.Userns, c.Spec.Annotations)
	}
	if !slices.ContainsFunc(c.Spec.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.UserNamespace }) {
		t.Errorf("userns: auto: no user namespace in %v", c.Spec.Linux.Namespaces)
	}
	if len(c.Spec.Linux.UIDMappings) != 0 {
		t.Errorf("userns: auto: the spec has mappings %v; the daemon chooses them", c.Spec.Linux.UIDMappings)
	}
	for _, m := range c.Spec.Mounts {
		if m.Destination == "/data" && !slices.Contains(m.Options, "idmap") {
			t.Errorf("bind mount %s is not idmapped: %v", m.Destination, m.Options)
		}
	}
	if slices.ContainsFunc(plain.Spec.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.UserNamespace }) {
		t.Errorf("without userns: a user namespace")
	}
	if host := parse(own + "  userns: host\n"); host.Hash != plain.Hash {
		t.Errorf("userns: host changes the hash")
	}
	if c.Hash == plain.Hash {
		t.Errorf("userns: auto leaves the hash as it was: the container would not be recreated")
	}
	if got := ChangedFields(plain, c); len(got) != 1 || got[0] != "spec.userns" {
		t.Errorf("ChangedFields = %v, want [spec.userns]", got)
	}
	for _, tc := range []struct{ src, want string }{
		{own + "  userns: private\n", `web.yaml:9: spec.userns: "private" is not a user namespace mode (use auto`},
		{base + "  userns: auto\n", `web.yaml:8: spec.userns: userns: auto needs a root filesystem of the container's own`},
		{own + "  runtime: runc\n  userns: auto\n", `web.yaml:10: spec.userns: userns: auto is done by the native runtime only (spec.runtime is runc)`},
		{own + "  user: \"70000\"\n  userns: auto\n", `web.yaml:10: spec.userns: spec.user 70000:70000 is outside the 65536 IDs`},
		{own + "  userns: auto\n  oci: {linux: {uidMappings: [{containerID: 0, hostID: 1000, size: 1}]}}\n", `linux.uidMappings: with userns: auto the daemon chooses`},
	} {
		_, errs := Parse("web.yaml", []byte(tc.src), opts)
		if got := Errors(errs).Error(); !strings.Contains(got, tc.want) {
			t.Errorf("%q:\n got %q\nwant %q", tc.src, got, tc.want)
		}
	}
	// An exec probe in a userns: auto container: taken where the runtime
	// can exec into a user namespace, refused where it cannot.
	execProbe := own + "  health: {exec: [/bin/true]}\n  userns: auto\n"
	defer func(v bool) { ExecIntoUserns = v }(ExecIntoUserns)
	ExecIntoUserns = true
	if cs, errs := Parse("web.yaml", []byte(execProbe), opts); len(errs) != 0 || len(cs) != 1 || cs[0].Manifest.Spec.Userns != UsernsAuto || cs[0].Manifest.Spec.Health == nil {
		t.Errorf("exec probe with userns: auto: %v", Errors(errs))
	}
	ExecIntoUserns = false
	_, errs := Parse("web.yaml", []byte(execProbe), opts)
	if got, want := Errors(errs).Error(), "web.yaml:10: spec.userns: exec probes cannot run in a container with userns: auto on "; !strings.Contains(got, want) {
		t.Errorf("exec probe with userns: auto, no exec into user namespaces:\n got %q\nwant %q", got, want)
	}
}
