package actual_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/reconciler"
)

// parseWeb parses testdata/records-v0/web.yaml with this release's parser,
// as the daemon would after an upgrade.
func parseWeb(t *testing.T) *desired.Container {
	t.Helper()
	data, err := os.ReadFile("testdata/records-v0/web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cs, errs := desired.Parse("web.yaml", data, desired.ParseOptions{SkipHostChecks: true})
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	cs[0].Source = "/etc/reconciled/manifests/web.yaml"
	return cs[0]
}

// TestReadRecordV0: a record written by the release before records had a
// version is read whole, and the planner finds its container up to date
// with the same manifest: an upgrade recreates nothing. If this fails
// because the spec hash changed on purpose, every container is recreated
// on upgrade: say so in the release notes; never regenerate the file.
func TestReadRecordV0(t *testing.T) {
	s, err := actual.OpenStore(t.TempDir(), "testdata/records-v0", actual.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, ok := s.Records()["web"]
	if !ok || r.Applied == nil {
		t.Fatalf("no record of web: %+v", s.Records())
	}
	if r.Restarts != 2 || r.Failures != 1 || !r.StopRequested.Equal(time.Date(2026, 12, 4, 18, 0, 0, 0, time.UTC)) {
		t.Errorf("record %+v", r)
	}
	want := parseWeb(t)
	a := r.Applied
	if a.Hash != want.Hash || a.BaseHash != want.BaseHash {
		t.Errorf("recorded hashes %s/%s, this release computes %s/%s: containers would be recreated on upgrade",
			a.Hash, a.BaseHash, want.Hash, want.BaseHash)
	}
	if a.Manifest == nil || a.Spec == nil {
		t.Fatalf("manifest or spec lost: %+v", a)
	}
	if f := desired.ChangedFields(a, want); len(f) > 0 {
		t.Errorf("fields read as changed: %v", f)
	}
	// The spec this release generates adds the default seccomp profile
	// and spells the bind volumes' options in their recursive forms (rro,
	// rnosuid: the same meaning for a volume, and both kept out of the
	// hash: existing containers are not recreated for them); everything
	// else reads back the same.
	bare := *want
	if want.Spec != nil && want.Spec.Linux != nil {
		spec, linux := *want.Spec, *want.Spec.Linux
		linux.Seccomp = nil
		spec.Linux = &linux
		spec.Mounts = nil
		for _, m := range want.Spec.Mounts {
			if m.Type == "bind" {
				opts := make([]string, len(m.Options))
				for i, o := range m.Options {
					if recursive := map[string]bool{"rro": true, "rnosuid": true, "rnodev": true, "rnoexec": true}; recursive[o] {
						o = o[1:]
					}
					opts[i] = o
				}
				m.Options = opts
			}
			spec.Mounts = append(spec.Mounts, m)
		}
		bare.Spec = &spec
	}
	sameJSON(t, a, &bare)

	// The planner, with the stop the record says was under way over.
	r.StopRequested = time.Time{}
	have := actual.Set{"web": {
		Name: "web", Status: actual.StatusRunning, Pid: 4242, PidStartTime: 1, InitAlive: true, CgroupHasProcs: true,
		Created: time.Now().Add(-time.Hour), Started: time.Now().Add(-time.Hour),
		SpecHash: a.Hash, BaseHash: a.BaseHash, Record: r,
	}}
	set := desired.Set{
		Containers: map[string]*desired.Container{"web": want},
		Files:      map[string]*desired.FileStatus{want.Source: {Path: want.Source, Containers: []string{"web"}}},
	}
	if acts := reconciler.Plan(set, have, time.Now()).Actions(); len(acts) > 0 {
		t.Errorf("after an upgrade the planner would do %+v", acts)
	}
}

// TestRecordRoundTrip: what Record writes, OpenStore reads back the same,
// with the current version; the file keeps the v0 keys.
func TestRecordRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := actual.OpenStore(t.TempDir(), dir, actual.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := parseWeb(t)
	c.Runtime, c.Image, c.PullPolicy, c.ImageDigest = "runc", "docker.io/library/busybox:1", desired.PullPolicy("IfNotPresent"), "sha256:abc"
	c.ImageWait, c.ImageFailed, c.ImageHealthNote = "not recorded", true, "not recorded"
	c.ImageHealth = &desired.Health{Exec: []string{"/bin/sh", "-c", "test -e /ok"}, Interval: 30 * time.Second, Timeout: time.Second, Retries: 3, StartPeriod: time.Second, OnUnhealthy: desired.OnUnhealthyRestart}
	r := actual.Record{Applied: c, Restarts: 3, Failures: 2, StopRequested: time.Unix(1700000000, 5).UTC()}
	if err := s.Record(context.Background(), "web", r); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "web.json"))
	if err != nil {
		t.Fatal(err)
	}
	var head struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil || head.Version != 1 {
		t.Errorf("record version %d (%v), want 1: %s", head.Version, err, data)
	}
	s2, err := actual.OpenStore(t.TempDir(), dir, actual.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := s2.Records()["web"]
	c.ImageWait, c.ImageFailed, c.ImageHealthNote = "", false, "" // never recorded
	if got.Restarts != r.Restarts || got.Failures != r.Failures || !got.StopRequested.Equal(r.StopRequested) {
		t.Errorf("read back %+v, want %+v", got, r)
	}
	sameJSON(t, got.Applied, c)
	old, err := os.ReadFile("testdata/records-v0/web.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"applied"`, `"spec"`, `"hash"`, `"baseHash"`, `"stopTimeout"`, `"manifest"`, `"restarts"`} {
		if !bytes.Contains(old, []byte(key)) || !bytes.Contains(data, []byte(key)) {
			t.Errorf("key %s not in both formats", key)
		}
	}
}

// sameJSON fails unless got and want encode the same: a JSON round trip
// turns empty slices into nil and the like.
func sameJSON(t *testing.T, got, want *desired.Container) {
	t.Helper()
	g, err1 := json.MarshalIndent(got, "", " ")
	w, err2 := json.MarshalIndent(want, "", " ")
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if !bytes.Equal(g, w) {
		t.Errorf("read\n%s\nwant\n%s", g, w)
	}
}

// TestRecordCarriesEveryField: a field added to desired.Container must be
// carried by the record (actual/record.go) or named here as not recorded.
func TestRecordCarriesEveryField(t *testing.T) {
	notRecorded := map[string]bool{"ImageWait": true, "ImageFailed": true, "AfterLines": true, "ImageHealthNote": true} // AfterLines: where spec.after was, for errors
	recorded := "Name Labels Source Doc Line Spec Hash BaseHash Restart StopSignal StopTimeout Runtime Image PullPolicy ImageDigest ImageHealth Manifest"
	known := map[string]bool{}
	for _, f := range strings.Fields(recorded) {
		known[f] = true
	}
	ct := reflect.TypeOf(desired.Container{})
	for i := 0; i < ct.NumField(); i++ {
		if n := ct.Field(i).Name; !known[n] && !notRecorded[n] {
			t.Errorf("desired.Container.%s is neither recorded (actual/record.go) nor listed as not recorded", n)
		}
	}
}

func TestRecordFromLaterRelease(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "web.json"), []byte(`{"version": 99, "restarts": 1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := actual.OpenStore(t.TempDir(), dir, actual.StoreOptions{})
	if err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("err %v, want one naming version 99", err)
	}
}

// A records directory that cannot be listed is no Store: the daemon must
// not start as if there were no records (it would recreate every
// container).
func TestOpenStoreUnlistable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := actual.OpenStore(t.TempDir(), file, actual.StoreOptions{})
	if s != nil || err == nil || errors.Is(err, actual.ErrRecord) {
		t.Errorf("OpenStore(a file) = %v, %v; want no Store and an error", s, err)
	}
}
