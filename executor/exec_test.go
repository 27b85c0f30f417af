package executor

import (
	"maps"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestMergeEnv(t *testing.T) {
	base := []string{"PATH=/bin", "TERM=xterm", "A=1"}
	got := mergeEnv(base, []string{"TERM=dumb", "B=2", "A="})
	want := []string{"PATH=/bin", "TERM=dumb", "A=", "B=2"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mergeEnv = %q, want %q", got, want)
	}
	if base[1] != "TERM=xterm" {
		t.Errorf("mergeEnv changed its input: %q", base)
	}
}

func TestExecProcessSpec(t *testing.T) {
	base := &specs.Process{
		Args: []string{"sleep", "1"}, Env: []string{"PATH=/bin"}, Cwd: "/srv",
		User:            specs.User{UID: 1, GID: 2, AdditionalGids: []uint32{3}},
		NoNewPrivileges: true,
	}
	p := execProcessSpec(base, ExecOptions{Args: []string{"id"}, User: &specs.User{UID: 7, GID: 8}, Terminal: true})
	if !reflect.DeepEqual(p.Args, []string{"id"}) || p.User.UID != 7 || p.User.GID != 8 || len(p.User.AdditionalGids) != 0 ||
		p.Cwd != "/srv" || !p.Terminal || !p.NoNewPrivileges || !reflect.DeepEqual(p.Env, []string{"PATH=/bin", "HOME="}) {
		t.Errorf("execProcessSpec = %+v", p)
	}
	if base.Args[0] != "sleep" || base.Terminal || len(base.Env) != 1 {
		t.Errorf("execProcessSpec changed the container's process: %+v", base)
	}
}

func TestParseStatus(t *testing.T) {
	status := "Name:\tsleep\nUmask:\t0022\nState:\tZ (zombie)\nTgid:\t1234\nPPid:\t1200\n" +
		"Uid:\t0\t65534\t65534\t65534\nGid:\t0\t65533\t65533\t65533\nNSpid:\t1234\t7\n"
	pi, err := parseStatus([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	want := ProcessInfo{NSPid: 7, PPid: 1200, UID: 65534, GID: 65533, State: "Z", Zombie: true, Command: "[sleep]"}
	if pi != want {
		t.Errorf("parseStatus = %+v, want %+v", pi, want)
	}
	if _, err := parseStatus([]byte("Name:\tx\n")); err == nil {
		t.Error("parseStatus of a status without State and Uid: no error")
	}
}

// runc exec --cgroup's paths: one for every hierarchy, or per controller;
// nothing outside the container's cgroup (runc's own prefix check lets
// "../ctrx" through, this one does not), no unknown controller.
func TestSubCgroupPaths(t *testing.T) {
	v1 := map[string]string{"memory": "/cg/memory/c", "cpu": "/cg/cpu,cpuacct/c", "cpuacct": "/cg/cpu,cpuacct/c", "": "/cg/unified/c"}
	for _, tc := range []struct {
		sub  map[string]string
		want map[string]string
		err  string
	}{
		{sub: nil, want: v1},
		{sub: map[string]string{"": "/"}, want: v1},
		{sub: map[string]string{"": "a/b"}, want: map[string]string{"memory": "/cg/memory/c/a/b", "cpu": "/cg/cpu,cpuacct/c/a/b", "cpuacct": "/cg/cpu,cpuacct/c/a/b", "": "/cg/unified/c/a/b"}},
		{sub: map[string]string{"memory": "m", "cpu": "x", "cpuacct": "x"}, want: map[string]string{"memory": "/cg/memory/c/m", "cpu": "/cg/cpu,cpuacct/c/x", "cpuacct": "/cg/cpu,cpuacct/c/x", "": "/cg/unified/c"}},
		{sub: map[string]string{"": ".."}, err: ".. is not a sub cgroup path"},
		{sub: map[string]string{"memory": "../cx"}, err: "../cx is not a sub cgroup path"},
		{sub: map[string]string{"memory": "a/../../c/ok"}, want: map[string]string{"memory": "/cg/memory/c/ok", "cpu": "/cg/cpu,cpuacct/c", "cpuacct": "/cg/cpu,cpuacct/c", "": "/cg/unified/c"}},
		{sub: map[string]string{"whaaat": "/"}, err: "unknown controller whaaat"},
	} {
		got, err := subCgroupPaths(v1, tc.sub)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("subCgroupPaths(%v): %v, %v; want error %q", tc.sub, got, err, tc.err)
			}
			continue
		}
		if err != nil || !maps.Equal(got, tc.want) {
			t.Errorf("subCgroupPaths(%v) = %v, %v; want %v", tc.sub, got, err, tc.want)
		}
	}
}
