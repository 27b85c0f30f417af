package desired

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const seccompHead = "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: web}\nspec:\n  root: {path: /}\n  command: [x]\n"

func parseSeccomp(t *testing.T, src string) *Container {
	t.Helper()
	cs, errs := Parse("web.yaml", []byte(seccompHead+src), ParseOptions{})
	if len(errs) > 0 || len(cs) != 1 {
		t.Fatalf("errors: %v", errs)
	}
	return cs[0]
}

// Every container gets Docker's default profile unless its manifest says
// otherwise; unconfined has none; a profile file is set up as dockerd
// does; an oci fragment's linux.seccomp is taken as written.
func TestSeccompField(t *testing.T) {
	def := parseSeccomp(t, "")
	sc := def.Spec.Linux.Seccomp
	if sc == nil || sc.DefaultAction != specs.ActErrno || len(sc.Syscalls) < 10 {
		t.Fatalf("default: %+v, want Docker's default profile", sc)
	}
	for _, s := range sc.Syscalls {
		if slices.Contains(s.Names, "ptrace") && s.Action == specs.ActAllow {
			t.Errorf("the default profile allows ptrace without CAP_SYS_PTRACE: %+v", s)
		}
	}
	if c := parseSeccomp(t, "  seccomp: default\n"); c.Hash != def.Hash || ChangedFields(def, c) != nil {
		t.Errorf("seccomp: default differs from no seccomp field: %v", ChangedFields(def, c))
	}
	// CAP_SYS_PTRACE brings ptrace back, as in Docker.
	if c := parseSeccomp(t, "  capabilities: {add: [SYS_PTRACE]}\n"); !allows(c.Spec.Linux.Seccomp, "ptrace") {
		t.Errorf("with CAP_SYS_PTRACE ptrace is still refused")
	}

	unconfined := parseSeccomp(t, "  seccomp: unconfined\n")
	if unconfined.Spec.Linux.Seccomp != nil {
		t.Errorf("unconfined: %+v", unconfined.Spec.Linux.Seccomp)
	}
	if unconfined.Hash == def.Hash || !slices.Equal(ChangedFields(def, unconfined), []string{"spec.seccomp"}) {
		t.Errorf("unconfined is not a change: %v", ChangedFields(def, unconfined))
	}

	profile := filepath.Join(t.TempDir(), "profile.json")
	write := func(s string) {
		if err := os.WriteFile(profile, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}, {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
		"syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_NE"}]},
		             {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_PTRACE"]}}]}`)
	file := parseSeccomp(t, "  seccomp: "+profile+"\n")
	fsc := file.Spec.Linux.Seccomp
	if fsc == nil || fsc.DefaultAction != specs.ActAllow || len(fsc.Syscalls) != 1 || fsc.Syscalls[0].Names[0] != "personality" || len(fsc.Architectures) < 2 {
		t.Errorf("profile file: %+v", fsc)
	}
	write(`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_KILL"}]}`)
	if c := parseSeccomp(t, "  seccomp: "+profile+"\n"); c.Hash == file.Hash || !slices.Equal(ChangedFields(file, c), []string{"spec.seccomp file"}) {
		t.Errorf("a changed profile file is not a change: %v", ChangedFields(file, c))
	}

	oci := parseSeccomp(t, "  oci:\n    linux:\n      seccomp: {defaultAction: SCMP_ACT_LOG}\n")
	if osc := oci.Spec.Linux.Seccomp; osc == nil || osc.DefaultAction != specs.ActLog || len(osc.Syscalls) != 0 || len(osc.Architectures) != 0 {
		t.Errorf("oci linux.seccomp is not as written: %+v", osc)
	}
	if c := parseSeccomp(t, "  oci:\n    linux:\n      seccomp: null\n"); c.Spec.Linux.Seccomp != nil {
		t.Errorf("oci linux.seccomp: null leaves %+v", c.Spec.Linux.Seccomp)
	}
}

func allows(s *specs.LinuxSeccomp, name string) bool {
	for _, sc := range s.Syscalls {
		if slices.Contains(sc.Names, name) && sc.Action == specs.ActAllow {
			return true
		}
	}
	return false
}

// A bad spec.seccomp is an error naming the file, line and field.
func TestSeccompFieldErrors(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badAction := file("action.json", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_MAYBE"}]}`)
	notify := file("notify.json", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}`)
	broken := file("broken.json", `{"defaultAction": `)
	for _, tt := range []struct{ name, src, want string }{
		{"relative", "  seccomp: profile.json\n", `web.yaml:7: spec.seccomp: "profile.json" is not default, unconfined or the absolute path`},
		{"missing", "  seccomp: " + dir + "/none.json\n", "web.yaml:7: spec.seccomp: profile " + dir + "/none.json: no such file or directory"},
		{"unknown action", "  seccomp: " + badAction + "\n", "web.yaml:7: spec.seccomp: profile " + badAction + `: syscalls[0] ([read]): unknown seccomp action "SCMP_ACT_MAYBE"`},
		{"notify", "  seccomp: " + notify + "\n", "web.yaml:7: spec.seccomp: profile " + notify + ": syscalls[0] ([read]): action SCMP_ACT_NOTIFY: user notification is not supported"},
		{"broken", "  seccomp: " + broken + "\n", "web.yaml:7: spec.seccomp: profile " + broken + ": Decoding seccomp profile failed"},
		{"with oci", "  seccomp: unconfined\n  oci: {linux: {seccomp: {defaultAction: SCMP_ACT_LOG}}}\n", "web.yaml:7: spec.seccomp: spec.oci sets linux.seccomp too; keep one of them"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := Parse("web.yaml", []byte(seccompHead+tt.src), ParseOptions{})
			if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), tt.want) {
				t.Errorf("errors %v, want one starting\n  %s", errs, tt.want)
			}
		})
	}
	// Without host checks the file is not read.
	if _, errs := Parse("web.yaml", []byte(seccompHead+"  seccomp: /nonexistent/profile.json\n"), ParseOptions{SkipHostChecks: true}); len(errs) > 0 {
		t.Errorf("--no-host-checks: %v", errs)
	}
}
