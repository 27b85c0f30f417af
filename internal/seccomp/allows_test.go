package seccomp

import (
	"runtime"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// AllowsAlways agrees with the kernel's interpreter (x/net/bpf here): a
// call it says is always allowed is allowed with any arguments, and Docker's
// default lets the calls a container's init makes last through always, but
// not clone (its flags are checked) nor mount (refused).
func TestAllowsAlways(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the table is x86_64's")
	}
	p := defaultProfile(t, "amd64")
	argSets := [][]uint64{nil, {1, 2, 3, 4, 5, 6}, {^uint64(0), 0x7e020000, 0x10000000, 0, 1 << 40, 42}}
	always := 0
	for nr := uint32(0); nr < 460; nr++ {
		if !p.AllowsAlways(nr) {
			continue
		}
		always++
		for _, args := range argSets {
			if got := run(t, p, auditArchX86_64, nr, args...); got != retAllow {
				t.Errorf("nr %d: AllowsAlways, but with arguments %v the filter returns %#x", nr, args, got)
			}
		}
	}
	if always < 250 {
		t.Errorf("only %d calls always allowed by Docker's default: AllowsAlways is too strict", always)
	}
	nums := sysnumAMD64()
	for _, name := range []string{"recvmsg", "read", "write", "mmap", "munmap", "exit_group", "openat2", "fchdir", "close",
		"prlimit64", "prctl", "setgroups", "setresgid", "setresuid", "capset", "umask", "close_range", "openat", "execve", "execveat"} {
		if !p.AllowsAlways(nums[name]) {
			t.Errorf("%s: not always allowed by Docker's default", name)
		}
	}
	for _, name := range []string{"clone", "mount", "personality"} {
		if p.AllowsAlways(nums[name]) {
			t.Errorf("%s: always allowed by Docker's default, which checks its arguments or refuses it", name)
		}
	}
	// LOG lets a call through, but not silently: not ALLOW.
	logged, err := Compile(&specs.LinuxSeccomp{DefaultAction: specs.ActLog}, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if logged.AllowsAlways(nums["write"]) {
		t.Error("a LOG default counts as ALLOW")
	}
	if (&Program{}).AllowsAlways(nums["write"]) {
		t.Error("an empty program allows write")
	}
}
