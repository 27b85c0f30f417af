package test

import (
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/internal/testutil"
)

// The calls Docker's default profile refuses that a container could use
// against the host (containment issue, item 2), and getppid, which it
// allows.
// ptrace's target is a sleep the script starts ($!).
var refusedByDefault = []string{"keyctl", "add_key", "unshare-user", "mount", "ptrace", "kexec_load", "bpf", "open_by_handle_at"}

func probeArgs(calls []string) string {
	var b strings.Builder
	for _, c := range calls {
		if c == "ptrace" {
			c = "ptrace:$!"
		}
		b.WriteString(" " + c)
	}
	return b.String()
}

// runProbe runs `sh -c script` in a busybox container with the sysprobe
// command at /sysprobe.
func (r *rt) runProbe(id string, edit func(*specs.Spec), script string) result {
	r.t.Helper()
	b := bundle(r.t, edit, "sh", "-c", script)
	testutil.InstallSysProbe(r.t, filepath.Join(b, "rootfs"))
	r.cleanup(id)
	return r.run("run", "--bundle", b, id)
}

func probeResults(t *testing.T, out string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			if strings.HasPrefix(k, "ptrace:") {
				k = "ptrace" // its argument is a PID
			}
			m[k] = v
		}
	}
	return m
}

func withDefaultSeccomp(t *testing.T, noNewPrivs bool) func(*specs.Spec) {
	return func(s *specs.Spec) {
		sc, err := desired.DefaultSeccomp(s.Process.Capabilities.Bounding)
		if err != nil {
			t.Fatal(err)
		}
		s.Linux.Seccomp = sc
		s.Process.NoNewPrivileges = noNewPrivs
	}
}

// Under the default profile the init's process is filtered (Seccomp: 2),
// the calls Docker refuses fail with EPERM, and busybox workloads run.
// With no_new_privs the filter goes in last; without, before the
// capabilities are dropped (it needs CAP_SYS_ADMIN then): both work.
func TestSeccompDefaultProfile(t *testing.T) {
	r := newRT(t)
	for _, nnp := range []bool{true, false} {
		name := "nnp"
		if !nnp {
			name = "no-nnp"
		}
		t.Run(name, func(t *testing.T) {
			script := "grep Seccomp: /proc/self/status; sleep 100 & /sysprobe" + probeArgs(refusedByDefault) + " getppid personality:0; kill $!" +
				"; ls /bin >/dev/null && date >/dev/null && sleep 0.1 && echo hello | wc -c && echo workload=ok"
			res := r.runProbe("seccomp-default-"+name, withDefaultSeccomp(t, nnp), script)
			if res.code != 0 {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
			}
			if !strings.Contains(res.stdout, "Seccomp:\t2\n") {
				t.Errorf("not under a seccomp filter:\n%s", res.stdout)
			}
			got := probeResults(t, res.stdout)
			for _, c := range refusedByDefault {
				if got[c] != "EPERM" {
					t.Errorf("%s: %q, want EPERM", c, got[c])
				}
			}
			for _, c := range []string{"getppid", "personality:0", "workload"} {
				if got[c] != "ok" {
					t.Errorf("%s: %q, want ok\n%s", c, got[c], res.stdout)
				}
			}
		})
	}
}

// The default profile lets through every call the init makes after it,
// so the filter goes in while the container is still being set up (see
// executor's earlyChunk): what the init does after it still happens. The
// process runs as its user, with its groups, in its working directory,
// without capabilities, under no_new_privs and the filter.
func TestSeccompDefaultProfileEarly(t *testing.T) {
	r := newRT(t)
	edit := func(s *specs.Spec) {
		withDefaultSeccomp(t, true)(s)
		s.Process.User = specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{10}}
		s.Process.Cwd = "/bin"
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 512, Soft: 256}}
	}
	res := r.runContainer(testutil.Name(t, 40), edit, "sh", "-c",
		"id -u; id -g; id -G; pwd; ulimit -n; grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status")
	if res.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	want := "1000\n1001\n1001 10\n/bin\n256\nNoNewPrivs:\t1\nSeccomp:\t2\n"
	got := res.stdout
	if i := strings.Index(got, "CapEff:"); i >= 0 {
		if !strings.HasPrefix(got[i:], "CapEff:\t0000000000000000\n") {
			t.Errorf("capabilities left: %q", got[i:])
		}
		got = got[:i] + got[i+len("CapEff:\t0000000000000000\n"):]
	}
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// Without linux.seccomp there is no filter: the calls the probe makes
// then get the kernel's own answers (what the test above must change).
func TestSeccompNone(t *testing.T) {
	r := newRT(t)
	res := r.runProbe("seccomp-none", nil, "grep Seccomp: /proc/self/status; sleep 100 & /sysprobe keyctl ptrace:$!; kill $!")
	if res.code != 0 || !strings.Contains(res.stdout, "Seccomp:\t0\n") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want Seccomp: 0", res.code, res.stdout, res.stderr)
	}
	if got := probeResults(t, res.stdout); got["keyctl"] == "EPERM" || got["ptrace"] != "ok" {
		t.Errorf("without a filter: %v (the default-profile test proves nothing if these are EPERM anyway)", got)
	}
}

// An argument condition acts on exactly those arguments: personality is
// allowed only with 0 as its 64-bit argument (0x100000000, which the
// kernel truncates to 0, is refused: the filter compares all 64 bits),
// with the errno the profile names.
func TestSeccompArgumentCondition(t *testing.T) {
	r := newRT(t)
	eacces := uint(13)
	res := r.runProbe("seccomp-args", func(s *specs.Spec) {
		s.Linux.Seccomp = &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32, specs.ArchAARCH64, specs.ArchARM},
			Syscalls: []specs.LinuxSyscall{{
				Names: []string{"personality"}, Action: specs.ActErrno, ErrnoRet: &eacces,
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0, Op: specs.OpNotEqual}},
			}},
		}
	}, "/sysprobe personality:0 personality:8 personality:0xffffffff personality:0x100000000 getppid")
	if res.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	got := probeResults(t, res.stdout)
	for call, want := range map[string]string{
		"personality:0": "ok", "personality:8": "EACCES", "personality:0xffffffff": "EACCES",
		"personality:0x100000000": "EACCES", "getppid": "ok",
	} {
		if got[call] != want {
			t.Errorf("%s: %q, want %s", call, got[call], want)
		}
	}
}

// A process started by exec gets the container's filter (as with runc).
func TestSeccompExec(t *testing.T) {
	r := newOpsRT(t)
	id, _, rootfs := r.started(withDefaultSeccomp(t, true), "sleep", "1000")
	testutil.InstallSysProbe(t, rootfs)
	status := r.cmdOK("exec", id, "--", "cat", "/proc/self/status")
	if got := statusField(t, status, "Seccomp"); got != "2" {
		t.Errorf("exec'd process: Seccomp %s, want 2", got)
	}
	got := probeResults(t, r.cmdOK("exec", id, "--", "/sysprobe", "keyctl", "getppid"))
	if got["keyctl"] != "EPERM" || got["getppid"] != "ok" {
		t.Errorf("exec'd process: %v, want keyctl EPERM and getppid ok", got)
	}
}

// As with runc: a system call numbered above every one the profile names
// gets ENOSYS (a newer kernel's call, which a program falls back from),
// not the default action's EPERM, which a named call still gets.
func TestSeccompUnknownSyscallENOSYS(t *testing.T) {
	r := newRT(t)
	res := r.runProbe(testutil.Name(t, 40), withDefaultSeccomp(t, true), "/sysprobe nr:1000 keyctl getppid")
	got := probeResults(t, res.stdout)
	if got["nr:1000"] != "ENOSYS" || got["keyctl"] != "EPERM" || got["getppid"] != "ok" {
		t.Fatalf("under the default profile: %v (exit %d, stderr %q); want nr:1000=ENOSYS keyctl=EPERM getppid=ok", got, res.code, res.stderr)
	}
}

// A startContainer hook runs in the container under its seccomp filter,
// as runc runs it (its seccomp.bats): a call the profile kills kills the
// hook, and start fails saying so.
func TestSeccompStartContainerHook(t *testing.T) {
	r := newRT(t)
	b := bundle(t, func(s *specs.Spec) {
		s.Process.NoNewPrivileges = true
		s.Linux.Seccomp = &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			Architectures: []specs.Arch{specs.ArchX86, specs.ArchX32},
			Syscalls:      []specs.LinuxSyscall{{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActKill}},
		}
		s.Hooks = &specs.Hooks{StartContainer: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "mkdir /tmp/by-hook"}}}}
	}, "true")
	id := testutil.Name(t, 40)
	r.cleanup(id)
	res := r.run("run", "--bundle", b, id)
	if res.code == 0 || !strings.Contains(res.stderr, "startContainer hook") || !strings.Contains(res.stderr, "error running hook") ||
		!strings.Contains(res.stderr, "bad system call") {
		t.Fatalf("run: exit %d, stderr %q; want a failure naming the startContainer hook and its bad system call", res.code, res.stderr)
	}
}
