package cgroups

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strings"
)

// A daemon's own parent: every container a daemon creates goes under one
// directory (cgroupfs) or slice (systemd) of that daemon's, so that two
// daemons on one host (a test instance, a staging state directory) never
// share a cgroup even for containers of the same name. The default daemon
// uses DefaultParent and DefaultSlice; another one derives its own from a
// key (its state directory): DefaultParent-<12 hex> and
// reconciled-<12 hex>.slice.

// DerivedParent returns the cgroupfs parent and the systemd slice for key:
// DefaultParent and DefaultSlice when key is "", else
// "/reconciled-<h>" and "reconciled-<h>.slice" where h is the first 12 hex
// digits of key's SHA-256.
func DerivedParent(key string) (parent, slice string) {
	if key == "" {
		return DefaultParent, DefaultSlice
	}
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:])[:12]
	return DefaultParent + "-" + h, DefaultScopePrefix + "-" + h + ".slice"
}

// isDriverParent says whether p is a parent directory the cgroupfs driver
// owns (DefaultParent, or one DerivedParent makes): Destroy removes it
// once it is empty.
func isDriverParent(p string) bool {
	if p == DefaultParent {
		return true
	}
	h, ok := strings.CutPrefix(p, DefaultParent+"-")
	if !ok || len(h) != 12 {
		return false
	}
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// CleanParent checks a cgroupfs parent (--cgroup-parent) and returns it
// cleaned, starting with '/': it may not be the root cgroup nor climb out
// of the hierarchy.
func CleanParent(p string) (string, error) {
	c, err := cleanPath("cgroup parent", p)
	if err != nil {
		return "", err
	}
	if c == "/" {
		return "", fmt.Errorf("cgroup parent %q is the root cgroup: name a directory under it", p)
	}
	return c, nil
}

// cleanPath cleans p, a cgroup path under a hierarchy's root, to start
// with '/'. It may hold no NUL and no ".." (it may not climb out of the
// hierarchy); what names p in the errors. The root itself ("/") is the
// caller's to refuse, with its own advice.
func cleanPath(what, p string) (string, error) {
	if strings.Contains(p, "\x00") {
		return "", fmt.Errorf("invalid %s %q", what, p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("%s %q climbs out of the hierarchy", what, p)
		}
	}
	return path.Clean("/" + p), nil
}

// CheckSlice checks a systemd slice name (NAME.slice, each '-' a level).
func CheckSlice(slice string) error {
	_, err := expandSlice(slice)
	return err
}

// PathIn returns the linux.cgroupsPath that puts container id under
// parent (cgroupfs: parent/id) or in slice (systemd: "slice:prefix:id",
// the scope prefix-id.scope where prefix is the slice's name without
// ".slice"), for the driver named driverName.
func PathIn(driverName, parent, slice, id string) string {
	if driverName == "systemd" {
		return slice + ":" + strings.TrimSuffix(slice, ".slice") + ":" + id
	}
	return parent + "/" + id
}
