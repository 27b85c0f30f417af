//go:build linux

package rootfs

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// mountOptions is a spec mount's options field split into what the kernel
// needs: mount-point attributes, superblock flags, propagation changes and
// the filesystem's own data options. It is pure data; parseOptions does no
// I/O.
type mountOptions struct {
	bind      bool // "bind" or "rbind", or type "bind"
	recursive bool // "rbind"

	// idmap: "idmap" or "ridmap" (OCI 1.1 idmapped mounts, with
	// mounts[].uidMappings/gidMappings); ridmap idmaps every mount of an
	// rbind's tree, idmap only its top.
	idmap, ridmap bool

	// attrSet and attrClr are MOUNT_ATTR_* bits named by the options, set
	// and explicitly cleared ("rw", "suid", ...). Unnamed bits are left as
	// they are on a bind mount and as the kernel's default on a new mount.
	attrSet, attrClr uint64
	// recSet and recClr come from the recursive forms ("rro", "rnosuid",
	// ...) and are applied to every mount of the tree.
	recSet, recClr uint64

	// sbFlags are superblock flags passed to fsconfig as flags ("sync",
	// "dirsync", "lazytime", "mand") or as MS_* bits to mount(2).
	sbFlags []string
	msSB    uintptr

	// propagation holds MS_SHARED/MS_SLAVE/MS_PRIVATE/MS_UNBINDABLE, each
	// optionally with MS_REC, in the order given.
	propagation []uintptr

	// data is the filesystem's own options ("size=64m", "mode=755",
	// "newinstance"), in order.
	data []string
}

type attrOpt struct {
	clear bool
	attr  uint64
}

// Mount-point attributes, as mount_setattr(2) names them. The atime modes
// are one field: MOUNT_ATTR__ATIME in attrClr with the mode in attrSet.
var attrOptions = map[string]attrOpt{
	"ro":            {false, unix.MOUNT_ATTR_RDONLY},
	"rw":            {true, unix.MOUNT_ATTR_RDONLY},
	"nosuid":        {false, unix.MOUNT_ATTR_NOSUID},
	"suid":          {true, unix.MOUNT_ATTR_NOSUID},
	"nodev":         {false, unix.MOUNT_ATTR_NODEV},
	"dev":           {true, unix.MOUNT_ATTR_NODEV},
	"noexec":        {false, unix.MOUNT_ATTR_NOEXEC},
	"exec":          {true, unix.MOUNT_ATTR_NOEXEC},
	"nodiratime":    {false, unix.MOUNT_ATTR_NODIRATIME},
	"diratime":      {true, unix.MOUNT_ATTR_NODIRATIME},
	"nosymfollow":   {false, unix.MOUNT_ATTR_NOSYMFOLLOW},
	"symfollow":     {true, unix.MOUNT_ATTR_NOSYMFOLLOW},
	"noatime":       {false, unix.MOUNT_ATTR_NOATIME},
	"strictatime":   {false, unix.MOUNT_ATTR_STRICTATIME},
	"relatime":      {false, unix.MOUNT_ATTR_RELATIME},
	"atime":         {true, unix.MOUNT_ATTR_NOATIME},
	"norelatime":    {true, 0}, // legacy no-ops under mount_setattr semantics
	"nostrictatime": {true, 0},
}

var sbOptions = map[string]uintptr{
	"sync":     unix.MS_SYNCHRONOUS,
	"dirsync":  unix.MS_DIRSYNC,
	"lazytime": unix.MS_LAZYTIME,
	"mand":     unix.MS_MANDLOCK,
}

// Options that change nothing or that only mount(8) understands.
var ignoredOptions = map[string]bool{
	"defaults": true, "async": true, "nolazytime": true, "nomand": true,
	"silent": true, "loud": true, "iversion": true, "noiversion": true,
	"auto": true, "noauto": true, "user": true, "nouser": true, "_netdev": true,
}

var propagationOptions = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// parsePropagation turns a linux.rootfsPropagation value into MS_* flags.
// "" returns 0 (the caller applies its default).
func parsePropagation(s string) (uintptr, error) {
	if s == "" {
		return 0, nil
	}
	p, ok := propagationOptions[s]
	if !ok {
		return 0, fmt.Errorf("unknown mount propagation %q", s)
	}
	return p, nil
}

func isAtime(a uint64) bool {
	return a == unix.MOUNT_ATTR_NOATIME || a == unix.MOUNT_ATTR_STRICTATIME || a == unix.MOUNT_ATTR_RELATIME
}

func applyAttr(set, clr *uint64, name string, o attrOpt) {
	switch {
	case name == "relatime" || name == "strictatime" || name == "noatime":
		*set = (*set &^ unix.MOUNT_ATTR__ATIME) | o.attr
		*clr |= unix.MOUNT_ATTR__ATIME
	case name == "atime" || name == "norelatime" || name == "nostrictatime":
		// Back to the default (relatime) only when the option named the
		// mode that is currently set; otherwise nothing to do.
		if name == "atime" && *set&unix.MOUNT_ATTR__ATIME == unix.MOUNT_ATTR_NOATIME ||
			name == "nostrictatime" && *set&unix.MOUNT_ATTR__ATIME == unix.MOUNT_ATTR_STRICTATIME {
			*set &^= unix.MOUNT_ATTR__ATIME
			*clr |= unix.MOUNT_ATTR__ATIME
		}
	case o.clear:
		*set &^= o.attr
		*clr |= o.attr
	default:
		*set |= o.attr
		*clr &^= o.attr
	}
}

// parseOptions splits a spec mount's options. typ is the mount's type; a
// "bind" type makes it a bind mount even without a "bind" option.
func parseOptions(typ string, opts []string) (mountOptions, error) {
	var mo mountOptions
	mo.bind = typ == "bind"
	for _, o := range opts {
		switch {
		case o == "bind":
			mo.bind = true
		case o == "rbind":
			mo.bind, mo.recursive = true, true
		case o == "remount":
			return mo, fmt.Errorf("mount option %q is not supported", o)
		case o == "idmap":
			mo.idmap = true
		case o == "ridmap":
			mo.idmap, mo.ridmap = true, true
		case o == "tmpcopyup":
			return mo, fmt.Errorf("mount option %q is not supported", o)
		case ignoredOptions[o]:
		default:
			if a, ok := attrOptions[o]; ok {
				applyAttr(&mo.attrSet, &mo.attrClr, o, a)
				continue
			}
			if strings.HasPrefix(o, "r") {
				if a, ok := attrOptions[o[1:]]; ok {
					applyAttr(&mo.recSet, &mo.recClr, o[1:], a)
					continue
				}
			}
			if p, ok := propagationOptions[o]; ok {
				mo.propagation = append(mo.propagation, p)
				continue
			}
			if f, ok := sbOptions[o]; ok {
				mo.sbFlags = append(mo.sbFlags, o)
				mo.msSB |= f
				continue
			}
			mo.data = append(mo.data, o)
		}
	}
	return mo, nil
}

// msFlags converts MOUNT_ATTR_* bits to the MS_* flags mount(2) takes.
func msFlags(attr uint64) uintptr {
	var f uintptr
	for _, m := range []struct {
		a  uint64
		ms uintptr
	}{
		{unix.MOUNT_ATTR_RDONLY, unix.MS_RDONLY},
		{unix.MOUNT_ATTR_NOSUID, unix.MS_NOSUID},
		{unix.MOUNT_ATTR_NODEV, unix.MS_NODEV},
		{unix.MOUNT_ATTR_NOEXEC, unix.MS_NOEXEC},
		{unix.MOUNT_ATTR_NODIRATIME, unix.MS_NODIRATIME},
		{unix.MOUNT_ATTR_NOSYMFOLLOW, unix.MS_NOSYMFOLLOW},
	} {
		if attr&m.a != 0 {
			f |= m.ms
		}
	}
	switch attr & unix.MOUNT_ATTR__ATIME {
	case unix.MOUNT_ATTR_NOATIME:
		f |= unix.MS_NOATIME
	case unix.MOUNT_ATTR_STRICTATIME:
		f |= unix.MS_STRICTATIME
	}
	return f
}

// attrsFromStatfs reads the mount-point attributes of a mount from
// statfs(2)'s f_flags (ST_* bits). Used where a remount must keep the
// flags the kernel locks (nosuid, nodev, noexec, atime).
func attrsFromStatfs(flags int64) uint64 {
	var a uint64
	for _, m := range []struct {
		st int64
		a  uint64
	}{
		{unix.ST_RDONLY, unix.MOUNT_ATTR_RDONLY},
		{unix.ST_NOSUID, unix.MOUNT_ATTR_NOSUID},
		{unix.ST_NODEV, unix.MOUNT_ATTR_NODEV},
		{unix.ST_NOEXEC, unix.MOUNT_ATTR_NOEXEC},
		{unix.ST_NODIRATIME, unix.MOUNT_ATTR_NODIRATIME},
		{unix.ST_NOATIME, unix.MOUNT_ATTR_NOATIME},
		{0x2000, unix.MOUNT_ATTR_NOSYMFOLLOW}, // ST_NOSYMFOLLOW
	} {
		if flags&m.st != 0 {
			a |= m.a
		}
	}
	if a&unix.MOUNT_ATTR__ATIME == 0 && flags&unix.ST_RELATIME == 0 {
		a |= unix.MOUNT_ATTR_STRICTATIME
	}
	return a
}
