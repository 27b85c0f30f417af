package daemon

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/internal/atomicfile"
)

// Subordinate ID files and the user whose ranges userns: auto containers
// get (one line such as "reconciled:100000:65536000" in each file gives
// 1,000 containers 65,536 IDs each).
const (
	DefaultSubuidFile = "/etc/subuid"
	DefaultSubgidFile = "/etc/subgid"
	SubIDUser         = "reconciled"
)

// usernsFileName is where the allocation is kept: STATE/userns.json.
const usernsFileName = "userns.json"

// usernsVersion is the version of userns.json this release writes.
const usernsVersion = 1

// idRange is one container's host IDs: UIDs UID..UID+Size-1 and GIDs
// GID..GID+Size-1 are 0..Size-1 inside.
type idRange struct {
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
	Size uint32 `json:"size"`
}

// usernsFile is userns.json on disk.
type usernsFile struct {
	Version    int                `json:"version"`
	Containers map[string]idRange `json:"containers"`
}

// usernsAlloc hands out host ID ranges to userns: auto containers from the
// subordinate ID ranges of SubIDUser, never two overlapping, and records
// them in STATE/userns.json so that a restarted daemon (adopting running
// containers) keeps them; a range is freed when its container is deleted.
type usernsAlloc struct {
	mu             sync.Mutex
	dir            string // the state directory
	subuid, subgid string
	ranges         map[string]idRange // by container name
}

// openUsernsAlloc reads STATE/userns.json and makes it agree with the
// bundles (the specs containers were created from): a range recorded in a
// bundle's spec is kept even if the file lost it, and a range whose
// container has no bundle (a create that never wrote it) is freed.
func openUsernsAlloc(layout Layout, subuid, subgid string) (*usernsAlloc, error) {
	a := &usernsAlloc{dir: string(layout), subuid: subuid, subgid: subgid, ranges: map[string]idRange{}}
	data, err := os.ReadFile(filepath.Join(a.dir, usernsFileName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("unable to read the user namespace allocations: %w", err)
	default:
		var f usernsFile
		if err := json.Unmarshal(data, &f); err != nil {
			return nil, fmt.Errorf("unable to read %s: %w", filepath.Join(a.dir, usernsFileName), err)
		}
		if f.Version > usernsVersion {
			return nil, fmt.Errorf("%s has version %d; this release reads up to %d", filepath.Join(a.dir, usernsFileName), f.Version, usernsVersion)
		}
		for name, r := range f.Containers {
			a.ranges[name] = r
		}
	}
	changed := false
	for name := range a.ranges {
		if _, err := os.Stat(layout.Bundle(name)); errors.Is(err, fs.ErrNotExist) {
			delete(a.ranges, name)
			changed = true
		}
	}
	bundles, _ := os.ReadDir(layout.Bundles())
	for _, b := range bundles {
		r, ok := bundleRange(filepath.Join(layout.Bundle(b.Name()), "config.json"))
		if ok && a.ranges[b.Name()] != r {
			a.ranges[b.Name()] = r
			changed = true
		}
	}
	if changed {
		if err := a.save(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// bundleRange is the range of a userns: auto container's spec file.
func bundleRange(path string) (idRange, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return idRange{}, false
	}
	var s specs.Spec
	if json.Unmarshal(data, &s) != nil || s.Annotations[desired.AnnotationUserns] != desired.UsernsAuto || s.Linux == nil ||
		len(s.Linux.UIDMappings) != 1 || len(s.Linux.GIDMappings) != 1 {
		return idRange{}, false
	}
	u, g := s.Linux.UIDMappings[0], s.Linux.GIDMappings[0]
	return idRange{UID: u.HostID, GID: g.HostID, Size: u.Size}, true
}

func (a *usernsAlloc) save() error {
	f := usernsFile{Version: usernsVersion, Containers: a.ranges}
	if err := atomicfile.WriteJSON(a.dir, usernsFileName, f, 0o600, atomicfile.SyncDir); err != nil {
		return fmt.Errorf("unable to record the user namespace allocations: %w", err)
	}
	return nil
}

// get returns name's range, allocating one (desired.UsernsSize wide) if it
// has none.
func (a *usernsAlloc) get(name string) (idRange, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r, ok := a.ranges[name]; ok {
		return r, nil
	}
	uid, err := a.pick(a.subuid, func(r idRange) uint32 { return r.UID })
	if err != nil {
		return idRange{}, err
	}
	gid, err := a.pick(a.subgid, func(r idRange) uint32 { return r.GID })
	if err != nil {
		return idRange{}, err
	}
	r := idRange{UID: uid, GID: gid, Size: desired.UsernsSize}
	a.ranges[name] = r
	if err := a.save(); err != nil {
		delete(a.ranges, name)
		return idRange{}, err
	}
	return r, nil
}

// free releases name's range.
func (a *usernsAlloc) free(name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.ranges[name]; !ok {
		return nil
	}
	delete(a.ranges, name)
	return a.save()
}

// pick finds the lowest desired.UsernsSize-wide block in SubIDUser's
// ranges of file that overlaps no allocated one (start picks the UID or
// the GID side).
func (a *usernsAlloc) pick(file string, start func(idRange) uint32) (uint32, error) {
	subs, err := readSubIDs(file, SubIDUser)
	if err != nil {
		return 0, err
	}
	if len(subs) == 0 {
		return 0, fmt.Errorf("userns: auto: %s has no range for user %q: add a line such as \"%s:100000:65536000\" to %s and to %s (%d IDs per container)",
			file, SubIDUser, SubIDUser, a.subuid, a.subgid, desired.UsernsSize)
	}
	used := make([]uint64, 0, len(a.ranges))
	for _, r := range a.ranges {
		used = append(used, uint64(start(r)))
	}
	slices.Sort(used)
	const size = desired.UsernsSize
	for _, s := range subs {
		for b := s.start; b+size <= s.start+s.count; {
			i, _ := slices.BinarySearch(used, b+size) // used[:i] start below the block's end
			if i == 0 || used[i-1]+size <= b {
				return uint32(b), nil
			}
			b = used[i-1] + size
		}
	}
	return 0, fmt.Errorf("userns: auto: the ranges of user %q in %s are all taken (%d containers have one): add IDs to its line", SubIDUser, file, len(a.ranges))
}

type subID struct{ start, count uint64 }

// readSubIDs reads user's ranges from a subuid(5) or subgid(5) file.
func readSubIDs(file, user string) ([]subID, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("userns: auto: %w (add a line such as \"%s:100000:65536000\")", err, user)
	}
	defer f.Close()
	var out []subID
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, ":")
		if len(parts) != 3 || parts[0] != user {
			continue
		}
		start, err1 := strconv.ParseUint(parts[1], 10, 32)
		count, err2 := strconv.ParseUint(parts[2], 10, 32)
		if err1 != nil || err2 != nil || start+count > 1<<32-1 {
			return nil, fmt.Errorf("userns: auto: %s:%d: %q is not NAME:START:COUNT within 32 bits", file, n, line)
		}
		out = append(out, subID{start, count})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("userns: auto: %s: %w", file, err)
	}
	return out, nil
}

// withUserns returns spec with name's range as its user namespace's
// mappings (allocated on first use).
func (a *usernsAlloc) withUserns(name string, spec *specs.Spec) (*specs.Spec, error) {
	r, err := a.get(name)
	if err != nil {
		return nil, err
	}
	s := *spec
	l := specs.Linux{}
	if spec.Linux != nil {
		l = *spec.Linux
	}
	l.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: r.UID, Size: r.Size}}
	l.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: r.GID, Size: r.Size}}
	s.Linux = &l
	return &s, nil
}
