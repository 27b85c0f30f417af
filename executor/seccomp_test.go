package executor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/seccomp"
	"reconciled.dev/reconciled/internal/testutil"
)

func dockerDefault(tb testing.TB) *specs.LinuxSeccomp {
	tb.Helper()
	s, err := mobyseccomp.GetDefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{
		Bounding: []string{"CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_SETGID"},
	}}})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// The runtime compiles a profile once: the next create with an equal
// profile (decoded anew from config.json) finds it by content.
func TestSeccompFilterCache(t *testing.T) {
	r := &Runtime{}
	a, err := r.seccompFilter(dockerDefault(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.seccompFilter(dockerDefault(t))
	if err != nil || a != b {
		t.Errorf("an equal profile compiled again (%p, %p, %v)", a, b, err)
	}
	other := dockerDefault(t)
	other.Syscalls[0].Names = append([]string{"keyctl"}, other.Syscalls[0].Names...)
	if c, err := r.seccompFilter(other); err != nil || c == a {
		t.Errorf("a different profile got the cached filter (%v)", err)
	}
}

// BenchmarkSeccompFilterCached is what a create pays for its filter once
// the profile was compiled: hashing it.
func BenchmarkSeccompFilterCached(b *testing.B) {
	r := &Runtime{}
	s := dockerDefault(b)
	for b.Loop() {
		if _, err := r.seccompFilter(s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateSeccomp times create (not the delete that follows), with
// no profile and with Docker's default (compiled once, then cached;
// installed by the init).
func BenchmarkCreateSeccomp(b *testing.B) {
	testutil.RequireRoot(b)
	rootfs := testutil.BusyboxRootfs(b)
	for _, profile := range []string{"none", "default"} {
		b.Run(profile, func(b *testing.B) {
			r, err := New(filepath.Join(b.TempDir(), "state"), WithReaper())
			if err != nil {
				b.Fatal(err)
			}
			spec := benchSpec(rootfs, "true")
			if profile == "default" {
				spec.Linux.Seccomp = dockerDefault(b)
			}
			ctx := context.Background()
			i := 0
			for b.Loop() {
				id := fmt.Sprintf("bench-seccomp-%d-%d", os.Getpid(), i)
				i++
				if err := r.Create(ctx, id, filepath.Dir(rootfs), CreateOptions{Spec: spec}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := r.Delete(ctx, id, true); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

func benchSpec(rootfs string, args ...string) *specs.Spec {
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}, NoNewPrivileges: true,
			Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}, Effective: []string{"CAP_KILL"}, Permitted: []string{"CAP_KILL"}}},
		Root:   &specs.Root{Path: rootfs},
		Mounts: []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.UTSNamespace},
		}},
	}
}

// BenchmarkSeccompGetppid reports the nanoseconds one getppid takes in a
// container without a filter and under Docker's default profile (the
// probe's own loop of 2,000,000 calls; b.N is the number of containers).
func BenchmarkSeccompGetppid(b *testing.B) {
	testutil.RequireRoot(b)
	rootfs := testutil.BusyboxRootfs(b)
	testutil.InstallSysProbe(b, rootfs)
	for _, profile := range []string{"none", "default"} {
		b.Run(profile, func(b *testing.B) {
			r, err := New(filepath.Join(b.TempDir(), "state"), WithReaper())
			if err != nil {
				b.Fatal(err)
			}
			spec := benchSpec(rootfs, "/sysprobe", "getppid-loop:2000000")
			if profile == "default" {
				spec.Linux.Seccomp = dockerDefault(b)
			}
			ctx := context.Background()
			var total float64
			for i := 0; b.Loop(); i++ {
				id := fmt.Sprintf("bench-getppid-%d-%d", os.Getpid(), i)
				out := filepath.Join(b.TempDir(), "out")
				f, err := os.Create(out)
				if err != nil {
					b.Fatal(err)
				}
				err = r.Create(ctx, id, filepath.Dir(rootfs), CreateOptions{Spec: spec, Stdout: f, Stderr: f})
				f.Close()
				if err != nil {
					b.Fatal(err)
				}
				if err := r.Start(ctx, id); err != nil {
					b.Fatal(err)
				}
				wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				_, err = r.Wait(wctx, id)
				cancel()
				r.Delete(ctx, id, true)
				if err != nil {
					b.Fatal(err)
				}
				data, _ := os.ReadFile(out)
				_, v, _ := strings.Cut(strings.TrimSpace(string(data)), "=")
				ns, err := strconv.ParseFloat(v, 64)
				if err != nil {
					b.Fatalf("probe output %q", data)
				}
				total += ns
			}
			b.ReportMetric(total/float64(b.N), "ns/getppid")
		})
	}
}

// Docker's default lets through every call the runner init makes after
// it: its filter goes in early. A filter that refuses one of those calls,
// or checks its arguments, stays in the last chunk.
func TestEarlySeccompChunk(t *testing.T) {
	r := &Runtime{}
	compile := func(s *specs.LinuxSeccomp) *seccomp.Program {
		t.Helper()
		p, err := r.seccompFilter(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	spec := &specs.Spec{Process: &specs.Process{NoNewPrivileges: true}}
	if earlyChunk(spec, compile(dockerDefault(t))) == nil {
		t.Error("Docker's default profile does not go in early")
	}
	if earlyChunk(spec, nil) != nil {
		t.Error("an early chunk without a filter")
	}
	errno := uint(1)
	for name, rule := range map[string]specs.LinuxSyscall{
		"capset refused":     {Names: []string{"capset"}, Action: specs.ActErrno, ErrnoRet: &errno},
		"prctl's arguments":  {Names: []string{"prctl"}, Action: specs.ActErrno, ErrnoRet: &errno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: unix.PR_SET_KEEPCAPS, Op: specs.OpEqualTo}}},
		"recvmsg logged":     {Names: []string{"recvmsg"}, Action: specs.ActLog},
		"close_range killed": {Names: []string{"close_range"}, Action: specs.ActKillProcess},
	} {
		p := compile(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{rule}})
		if earlyChunk(spec, p) != nil {
			t.Errorf("%s: the filter goes in early", name)
		}
	}
}
