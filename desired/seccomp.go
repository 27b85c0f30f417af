package desired

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"

	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/internal/seccomp"
)

// spec.seccomp values besides a profile file's path.
const (
	SeccompDefault    = "default"    // Docker's default profile (see DefaultSeccomp)
	SeccompUnconfined = "unconfined" // no filter
)

// maxSeccompProfile bounds a profile file (Docker's default is ~20 KiB).
const maxSeccompProfile = 1 << 20

// defaultSeccomp caches DefaultSeccomp by bounding set: containers share
// the result, which no one changes.
var defaultSeccomp sync.Map // string (bounding set) -> *specs.LinuxSeccomp

// DefaultSeccomp is the default seccomp profile for a process with the
// bounding capability set bounding: Docker's default profile
// (github.com/moby/profiles/seccomp) set up for this machine's
// architectures, kernel and those capabilities, as dockerd does, with one
// difference: ptrace, process_vm_readv and process_vm_writev need
// CAP_SYS_PTRACE on every kernel (Docker allows them to all from Linux
// 4.8, where seccomp no longer lets a traced process escape its filter;
// a container here cannot trace another process without that capability).
// The result is shared: callers must not change it.
func DefaultSeccomp(bounding []string) (*specs.LinuxSeccomp, error) {
	key := strings.Join(bounding, ",")
	if v, ok := defaultSeccomp.Load(key); ok {
		return v.(*specs.LinuxSeccomp), nil
	}
	p := mobyseccomp.DefaultProfile()
	p.Syscalls = slices.DeleteFunc(p.Syscalls, func(s *mobyseccomp.Syscall) bool {
		return slices.Contains(s.Names, "ptrace") && (s.Includes == nil || len(s.Includes.Caps) == 0)
	})
	body, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	ls, err := setupSeccomp(body, bounding)
	if err != nil {
		return nil, err
	}
	defaultSeccomp.Store(key, ls)
	return ls, nil
}

// setupSeccomp resolves a Docker profile (JSON) for this machine and
// bounding set.
func setupSeccomp(body []byte, bounding []string) (*specs.LinuxSeccomp, error) {
	rs := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: bounding}}}
	ls, err := mobyseccomp.LoadProfile(string(body), rs)
	if err != nil {
		return nil, err
	}
	if ls == nil {
		return nil, fmt.Errorf("the profile has no defaultAction and no syscalls")
	}
	return ls, nil
}

// readSeccompProfile reads and checks a profile file: Docker's format
// (architectures or archMap, syscalls with includes/excludes) or the
// runtime-spec's linux.seccomp. It is compiled for this machine, so that
// an action, operator or flag that would be refused at create is an
// error now.
func readSeccompProfile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, unwrapPathError(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSeccompProfile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSeccompProfile {
		return nil, fmt.Errorf("larger than %d bytes", maxSeccompProfile)
	}
	ls, err := setupSeccomp(data, nil)
	if err != nil {
		return nil, err
	}
	if _, err := seccomp.Compile(ls, runtime.GOARCH); err != nil {
		return nil, err
	}
	return data, nil
}

// specSeccomp is linux.seccomp for ms and the bounding set: nil when
// unconfined, or when the oci fragment sets linux.seccomp (it is then
// taken as written, not merged over a generated profile).
func specSeccomp(ms *ManifestSpec, bounding []string) (*specs.LinuxSeccomp, error) {
	if ms.Seccomp == SeccompUnconfined || ociSetsSeccomp(ms.OCI) {
		return nil, nil
	}
	if ms.Seccomp == "" || ms.Seccomp == SeccompDefault {
		return DefaultSeccomp(bounding)
	}
	if ms.SeccompProfile == nil {
		return nil, nil // host checks skipped: the file was not read
	}
	return setupSeccomp(ms.SeccompProfile, bounding)
}

// ociSetsSeccomp says whether the oci fragment has linux.seccomp (null
// included: it removes the filter).
func ociSetsSeccomp(oci json.RawMessage) bool {
	if len(oci) == 0 {
		return false
	}
	var f struct {
		Linux map[string]json.RawMessage `json:"linux"`
	}
	if json.Unmarshal(oci, &f) != nil {
		return false
	}
	_, ok := f.Linux["seccomp"]
	return ok
}
