package seccomp

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// steps runs p on one seccomp_data (Program.run, checked against
// x/net/bpf below) and returns the result and the instructions run: the
// work the kernel's BPF does per system call.
func steps(t *testing.T, p *Program, arch, nr uint32, args ...uint64) (uint32, int) {
	t.Helper()
	var data [64]byte
	binary.NativeEndian.PutUint32(data[0:], nr)
	binary.NativeEndian.PutUint32(data[4:], arch)
	for i, a := range args {
		binary.NativeEndian.PutUint64(data[16+8*i:], a)
	}
	ret, n, _, err := p.run(&data)
	if err != nil {
		t.Fatal(err)
	}
	return ret, n
}

// The default profile's dispatch is a binary search: every x86_64 call
// runs a few dozen instructions at most, not one comparison per name.
func TestDefaultProfilePathLength(t *testing.T) {
	p := defaultProfile(t, "amd64")
	worst, total, n := 0, 0, 0
	for nr := uint32(0); nr < 460; nr++ {
		ret, k := steps(t, p, auditArchX86_64, nr)
		if want := run(t, p, auditArchX86_64, nr); ret != want {
			t.Fatalf("nr %d: the interpreter says %#x, x/net/bpf %#x", nr, ret, want)
		}
		worst, total, n = max(worst, k), total+k, n+1
	}
	_, getppid := steps(t, p, auditArchX86_64, sysnumAMD64()["getppid"])
	t.Logf("Docker's default, x86_64: %d instructions; per call: getppid %d, mean %.1f, worst %d", p.Len(), getppid, float64(total)/float64(n), worst)
	if worst > 40 {
		t.Errorf("a system call runs %d instructions of the filter", worst)
	}
}

const installBenchEnv = "SECCOMP_INSTALL_BENCH"

func TestMain(m *testing.M) {
	if os.Getenv(installBenchEnv) == "1" {
		installChild()
	}
	os.Exit(m.Run())
}

// installChild loads Docker's default filter into this process (a
// child of BenchmarkInstall) and prints how long the seccomp(2) call took.
func installChild() {
	runtime.LockOSThread()
	t := &testing.T{}
	p := defaultProfile(t, runtime.GOARCH)
	if os.Getenv(installBenchEnv+"_TINY") == "1" {
		p, _ = Compile(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow}, runtime.GOARCH)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		os.Exit(3)
	}
	start := time.Now()
	if err := p.Install(); err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	fmt.Println(time.Since(start).Nanoseconds())
	os.Exit(0)
}

// BenchmarkInstall reports what loading Docker's default filter costs (the
// kernel checks and JIT-compiles it), once per child process.
func BenchmarkInstall(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for b.Loop() {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), installBenchEnv+"=1")
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("%v: %s", err, out)
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		if err != nil {
			b.Fatalf("child said %q", out)
		}
		total += ns
	}
	b.ReportMetric(float64(total)/float64(b.N)/1000, "us/install")
}
