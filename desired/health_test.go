package desired

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseHealthDefaults(t *testing.T) {
	c := parseOne(t, base+"  health: {http: {port: 8080}}\n")
	want := &Health{HTTP: &HTTPProbe{Port: 8080, Path: "/"}, Interval: 10 * time.Second, Timeout: time.Second, Retries: 3, OnUnhealthy: OnUnhealthyRestart}
	if got := c.HealthOf(); !reflect.DeepEqual(got, want) {
		t.Errorf("health = %+v, want %+v", got, want)
	}
	if c.After() != nil || c.Notify() {
		t.Errorf("after/notify: %v %v", c.After(), c.Notify())
	}
}

func TestParseHealthAndAfter(t *testing.T) {
	c := parseOne(t, base+`  health:
    exec: ["/bin/check", "-q"]
    interval: 200ms
    timeout: 2
    retries: 5
    startPeriod: 30s
    onUnhealthy: none
  after:
    - {name: db, condition: healthy}
    - name: cache
`)
	want := &Health{Exec: []string{"/bin/check", "-q"}, Interval: 200 * time.Millisecond, Timeout: 2 * time.Second, Retries: 5, StartPeriod: 30 * time.Second, OnUnhealthy: OnUnhealthyNone}
	if got := c.HealthOf(); !reflect.DeepEqual(got, want) {
		t.Errorf("health = %+v, want %+v", got, want)
	}
	wantAfter := []Dependency{{Name: "db", Condition: ConditionHealthy}, {Name: "cache", Condition: ConditionStarted}}
	if !reflect.DeepEqual(c.After(), wantAfter) || !reflect.DeepEqual(c.AfterLines, []int{16, 17}) {
		t.Errorf("after = %+v lines %v", c.After(), c.AfterLines)
	}
	if got := c.HealthOf().Describe(); got != "exec /bin/check -q" {
		t.Errorf("describe: %q", got)
	}
}

// Health and after are not in the spec hash: a changed probe or start
// order does not recreate the container; but the Set changes, so that the
// daemon sees the new probe.
func TestHealthNotInHash(t *testing.T) {
	a := parseOne(t, base)
	b := parseOne(t, base+"  health: {tcp: {port: 5432}, interval: 1s}\n  after: [{name: db}]\n")
	if a.Hash != b.Hash || a.BaseHash != b.BaseHash {
		t.Errorf("health/after changed the spec hash")
	}
	sa := Set{Containers: map[string]*Container{"web": a}}
	sb := Set{Containers: map[string]*Container{"web": b}}
	if sa.Equal(sb) {
		t.Errorf("sets with different probes are Equal: the daemon would not see the new probe")
	}
}

func TestParseHealthErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"no probe", "  health: {interval: 1s}", `web.yaml:8: spec.health: needs one probe: exec (e.g. ["/bin/check"]), http ({port: 8080, path: /healthz}) or tcp ({port: 5432})`},
		{"two probes", "  health: {exec: [/bin/true], tcp: {port: 1}}", `web.yaml:8: spec.health.tcp: exec, http and tcp are exclusive: give exactly one probe (here: exec and tcp)`},
		{"unknown", "  health: {tcp: {port: 1}, period: 1s}", `web.yaml:8: spec.health.period: unknown field "period" (valid: exec, http, tcp, interval, timeout, retries, startPeriod, onUnhealthy)`},
		{"exec empty", "  health: {exec: []}", `web.yaml:8: spec.health.exec: must not be empty (e.g. ["/bin/check"])`},
		{"http no port", "  health: {http: {path: /x}}", `web.yaml:8: spec.health.http.port: required: the port the container listens on (1 to 65535)`},
		{"http port", "  health: {http: {port: 70000}}", `web.yaml:8: spec.health.http.port: 70000 is not a port (a number from 1 to 65535)`},
		{"http path", "  health: {http: {port: 80, path: healthz}}", `web.yaml:8: spec.health.http.path: "healthz" is not a request path (start with '/', no spaces; e.g. /healthz)`},
		{"tcp port string", "  health: {tcp: {port: pg}}", `web.yaml:8: spec.health.tcp.port: the string "pg" is not a port (a number from 1 to 65535)`},
		{"interval", "  health: {tcp: {port: 1}, interval: soon}", `web.yaml:8: spec.health.interval: "soon" is not a duration (use e.g. 10s or 500ms)`},
		{"interval small", "  health: {tcp: {port: 1}, interval: 1ms}", `web.yaml:8: spec.health.interval: "1ms" is out of range (100ms to 24h0m0s)`},
		{"timeout", "  health: {tcp: {port: 1}, timeout: 0s}", `web.yaml:8: spec.health.timeout: "0s" is out of range (10ms to 1h0m0s)`},
		{"startPeriod", "  health: {tcp: {port: 1}, startPeriod: -1s}", `web.yaml:8: spec.health.startPeriod: "-1s" is out of range (0s to 24h0m0s)`},
		{"retries", "  health: {tcp: {port: 1}, retries: 0}", `web.yaml:8: spec.health.retries: 0 is out of range (1 to 1000)`},
		{"retries string", "  health: {tcp: {port: 1}, retries: three}", `web.yaml:8: spec.health.retries: must be a whole number (failures in a row; e.g. 3), not the string "three"`},
		{"onUnhealthy", "  health: {tcp: {port: 1}, onUnhealthy: stop}", `web.yaml:8: spec.health.onUnhealthy: "stop" is not an action (use restart or none)`},
		{"notify", "  notify: yes", `web.yaml:8: spec.notify: must be true or false, not the string "yes"`},
		{"notify env", "  env: {NOTIFY_SOCKET: /x}\n  notify: true", `web.yaml:9: spec.notify: spec.env sets NOTIFY_SOCKET too; remove it from env (notify: true sets it to the daemon's socket)`},
		{"exec probe runc", "  runtime: runc\n  health: {exec: [/bin/true]}", `web.yaml:9: spec.health.exec: exec probes run only in containers of the native runtime (this one's is runc); use an http or tcp probe`},
		{"after mapping", "  after: {name: db}", `web.yaml:8: spec.after: must be a list such as [{name: db, condition: healthy}], not a mapping`},
		{"after name", "  after: [{condition: healthy}]", `web.yaml:8: spec.after[0].name: required: the name of the container to wait for`},
		{"after bad name", "  after: [{name: DB}]", `web.yaml:8: spec.after[0].name: "DB" is not a container name (a lowercase DNS-1123 label such as db)`},
		{"after self", "  after: [{name: web}]", `web.yaml:8: spec.after[0].name: "web" is this container itself; a container cannot wait for itself`},
		{"after twice", "  after:\n    - {name: db}\n    - {name: db, condition: healthy}", `web.yaml:10: spec.after[1].name: "db" is named twice (first on line 9)`},
		{"after condition", "  after: [{name: db, condition: up}]", `web.yaml:8: spec.after[0].condition: "up" is not a condition (use started, healthy, ready or completed)`},
		{"after field", "  after: [{name: db, when: healthy}]", `web.yaml:8: spec.after[0].when: unknown field "when" (valid: name, condition)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := Parse("web.yaml", []byte(base+tt.src+"\n"), ParseOptions{})
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("errors:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), tt.want)
			}
		})
	}
}

// withLines appends extra spec lines to manifest(name, "1").
func withLines(name string, extra ...string) string {
	return manifest(name, "1") + strings.Join(extra, "\n") + "\n"
}

func TestNextAfterUnknownAndCycle(t *testing.T) {
	dir := t.TempDir()
	db, api, web := filepath.Join(dir, "db.yaml"), filepath.Join(dir, "api.yaml"), filepath.Join(dir, "web.yaml")
	write(t, db, withLines("db", "  health: {tcp: {port: 5432}}"))
	write(t, api, withLines("api", "  after: [{name: db, condition: healthy}]"))
	write(t, web, withLines("web", "  after: [{name: api}]"))
	s1 := load(t, dir, Set{}, insecure)
	if len(s1.Containers) != 3 || len(s1.Errors()) != 0 {
		t.Fatalf("chain: %s %v", describeSet(s1), s1.Errors())
	}

	// db waits for web: a cycle, named with files and lines; db.yaml
	// applies nothing (its last good definition stays).
	write(t, db, withLines("db", "  health: {tcp: {port: 5432}}", "  after: [{name: web}]"))
	s2 := load(t, dir, s1, insecure)
	want := `db.yaml:9: spec.after[0].name: the start order has a cycle: db (db.yaml:4) -> web (web.yaml:4) -> api (api.yaml:4) -> db; remove one of these from spec.after`
	if errs := s2.Files[db].Errors; len(errs) != 1 || errs[0].Error() != want {
		t.Errorf("cycle: %v\nwant %s", errs, want)
	}
	if s2.Containers["db"] != s1.Containers["db"] {
		t.Errorf("db's last good definition is not kept")
	}

	// A fresh read of the cycle: every file in it is refused.
	s0 := load(t, dir, Set{}, insecure)
	if len(s0.Containers) != 0 || len(s0.Errors()) != 3 {
		t.Errorf("fresh cycle: %s %v", describeSet(s0), s0.Errors())
	}

	// An unknown name, and healthy on a container without a probe.
	write(t, db, withLines("db"))
	write(t, web, withLines("web", "  after: [{name: api}, {name: cache}]"))
	s3 := load(t, dir, Set{}, insecure)
	got := []string{}
	for _, e := range s3.Errors() {
		got = append(got, e.Error())
	}
	wantErrs := []string{
		`api.yaml:8: spec.after[0].name: "db" (db.yaml:4) has no spec.health, so it never becomes healthy; give it a probe, or wait for condition started`,
		`web.yaml:8: spec.after[1].name: "cache" is not defined by any manifest in the directory; define it, or remove it from spec.after`,
	}
	if !reflect.DeepEqual(got, wantErrs) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantErrs, "\n"))
	}
	if s3.Containers["db"] == nil || s3.Containers["api"] != nil || s3.Containers["web"] != nil {
		t.Errorf("applied: %s", describeSet(s3))
	}

	// A dependency whose file goes away is not an error of the unchanged
	// file that waits for it (the planner shows the wait).
	write(t, db, withLines("db", "  health: {tcp: {port: 5432}}"))
	write(t, web, withLines("web", "  after: [{name: api}]"))
	s4 := load(t, dir, Set{}, insecure)
	if len(s4.Errors()) != 0 {
		t.Fatalf("%v", s4.Errors())
	}
	os.Remove(db)
	s5 := load(t, dir, s4, insecure)
	if len(s5.Errors()) != 0 || s5.Containers["api"] == nil {
		t.Errorf("after removing db.yaml: %s %v", describeSet(s5), s5.Errors())
	}
}

// notify: true hands the container the daemon's socket in its
// environment; that is in the spec hash (the container is recreated).
func TestParseNotify(t *testing.T) {
	a := parseOne(t, base)
	b := parseOne(t, base+"  notify: true\n")
	if !b.Notify() || a.Notify() {
		t.Fatalf("notify: %v %v", a.Notify(), b.Notify())
	}
	if !slices.Contains(b.Spec.Process.Env, "NOTIFY_SOCKET=@reconciled-notify/web") {
		t.Errorf("env: %v", b.Spec.Process.Env)
	}
	if a.Hash == b.Hash {
		t.Errorf("notify is not in the spec hash")
	}
	if got := ChangedFields(a, b); !slices.Equal(got, []string{"spec.notify"}) {
		t.Errorf("changed fields: %v", got)
	}
}

// An image's HEALTHCHECK as a probe: docker's forms and defaults, bounds
// raised to spec.health's, nothing for NONE or an unknown form, and no
// exec probe for another runtime than native.
func TestImageProbe(t *testing.T) {
	exec := func(args ...string) *Health {
		return &Health{Exec: args, Interval: 30 * time.Second, Timeout: 30 * time.Second, Retries: 3, OnUnhealthy: OnUnhealthyRestart}
	}
	custom := exec("/check")
	custom.Interval, custom.Timeout, custom.StartPeriod, custom.Retries = 100*time.Millisecond, 2*time.Second, 5*time.Second, 7
	tests := []struct {
		name    string
		hc      *ImageHealthcheck
		runtime string
		want    *Health
		why     string
	}{
		{"none given", nil, "", nil, ""},
		{"inherit", &ImageHealthcheck{Test: []string{}}, "", nil, ""},
		{"NONE", &ImageHealthcheck{Test: []string{"NONE"}}, "", nil, ""},
		{"CMD", &ImageHealthcheck{Test: []string{"CMD", "/check", "-q"}}, "", exec("/check", "-q"), ""},
		{"CMD-SHELL", &ImageHealthcheck{Test: []string{"CMD-SHELL", "curl -f localhost || exit 1"}}, RuntimeNative, exec("/bin/sh", "-c", "curl -f localhost || exit 1"), ""},
		{"settings, 1ms raised", &ImageHealthcheck{Test: []string{"CMD", "/check"}, Interval: time.Millisecond, Timeout: 2 * time.Second, StartPeriod: 5 * time.Second, Retries: 7}, "", custom, ""},
		{"CMD without command", &ImageHealthcheck{Test: []string{"CMD"}}, "", nil, "HEALTHCHECK has no command"},
		{"CMD-SHELL two strings", &ImageHealthcheck{Test: []string{"CMD-SHELL", "a", "b"}}, "", nil, "HEALTHCHECK CMD-SHELL takes one command, not 2 strings"},
		{"unknown form", &ImageHealthcheck{Test: []string{"HTTP", "/"}}, "", nil, `HEALTHCHECK test "HTTP" is not NONE, CMD or CMD-SHELL`},
		{"runc", &ImageHealthcheck{Test: []string{"CMD", "/check"}}, RuntimeRunc, nil, "HEALTHCHECK runs a command, which only containers of the native runtime can probe (this one's is runc); give spec.health an http or tcp probe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := imageProbe(tt.hc, tt.runtime)
			if !reflect.DeepEqual(got, tt.want) || why != tt.why {
				t.Errorf("imageProbe = %+v %q, want %+v %q", got, why, tt.want, tt.why)
			}
		})
	}
}

// A resolved container carries its image's probe, outside the hash (a
// HEALTHCHECK alone never recreates a container); Probe takes spec.health
// first, then the image's of the run, and none with `health: none`.
func TestProbeFromImage(t *testing.T) {
	hc := &ImageHealthcheck{Test: []string{"CMD", "/check"}}
	img := ImageInfo{Digest: testImage.Digest, RootPath: "/r", Cmd: []string{"sh"}}
	plain := parseOne(t, imageHead+"  image: busybox\n")
	r0, err := plain.WithImage(img)
	if err != nil {
		t.Fatal(err)
	}
	img.Healthcheck = hc
	r, err := plain.WithImage(img)
	if err != nil {
		t.Fatal(err)
	}
	if r.Hash != r0.Hash || r.BaseHash != r0.BaseHash {
		t.Errorf("an image's HEALTHCHECK changed the spec hash")
	}
	if r.ImageHealth == nil || !slices.Equal(r.ImageHealth.Exec, []string{"/check"}) || r0.ImageHealth != nil {
		t.Fatalf("image health: %+v / %+v", r.ImageHealth, r0.ImageHealth)
	}
	if got := Probe(plain, r); got != r.ImageHealth {
		t.Errorf("Probe without spec.health = %+v, want the image's", got)
	}
	if got := Probe(plain, nil); got != nil {
		t.Errorf("Probe without a run = %+v, want none", got)
	}
	own := parseOne(t, imageHead+"  image: busybox\n  health: {tcp: {port: 5432}}\n")
	if got := Probe(own, r); got == nil || got.TCP == nil {
		t.Errorf("Probe with spec.health = %+v, want the manifest's", got)
	}
	off := parseOne(t, imageHead+"  image: busybox\n  health: none\n")
	if got := Probe(off, r); got != nil || off.HealthOf() != nil || !off.Manifest.Spec.HealthNone {
		t.Errorf("health: none: Probe = %+v", got)
	}
	if off.Hash != plain.Hash {
		t.Errorf("health: none changed the spec hash")
	}
	sa := Set{Containers: map[string]*Container{"web": plain}}
	sb := Set{Containers: map[string]*Container{"web": off}}
	if sa.Equal(sb) {
		t.Errorf("health: none is not seen as a change of the set")
	}
}

func TestParseHealthNoneErrors(t *testing.T) {
	_, errs := Parse("web.yaml", []byte(base+"  health: off\n"), ParseOptions{})
	want := `web.yaml:8: spec.health: must be a probe such as {http: {port: 8080, path: /healthz}}, or none (no probe, not even the image's HEALTHCHECK), not the string "off"`
	if len(errs) != 1 || errs[0].Error() != want {
		t.Errorf("errors = %v, want %s", errs, want)
	}
}

// spec.after's condition healthy is accepted for a container of an image
// without spec.health (its image may have a HEALTHCHECK), not for one with
// health: none.
func TestNextAfterHealthyImage(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "web.yaml"), imageHead+"  image: busybox\n")
	write(t, filepath.Join(dir, "off.yaml"), strings.ReplaceAll(imageHead, "name: web", "name: off")+"  image: busybox\n  health: none\n")
	write(t, filepath.Join(dir, "api.yaml"), withLines("api", "  after: [{name: web, condition: healthy}, {name: off, condition: healthy}]"))
	s := load(t, dir, Set{}, insecure)
	errs := s.Errors()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `"off"`) || !strings.Contains(errs[0].Error(), "has no spec.health") {
		t.Errorf("errors: %v", errs)
	}
}
