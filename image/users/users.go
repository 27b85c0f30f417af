// Package users resolves an image config's User ("app", "1000",
// "app:staff", "1000:50") through the image's own /etc/passwd and
// /etc/group, as runc and containerd do: a name means nothing outside the
// image, and the host's databases are never consulted.
//
// The files are read from the unpacked layer directories as the overlay
// will show them: the topmost layer that has the path wins; an overlay
// whiteout (a 0:0 character device) or an opaque directory above hides
// the lower ones. Every open is resolved inside its layer
// (RESOLVE_IN_ROOT), so a hostile symlink cannot make the daemon read a
// host file.
package users

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// User is a resolved user.
type User struct {
	UID, GID uint32
	// Groups are the supplementary groups /etc/group lists the user in
	// (the primary group left out), ascending as the file has them.
	Groups []uint32
}

// maxFile bounds what is read of /etc/passwd or /etc/group.
const maxFile = 4 << 20

// ErrNotFound is wrapped when a name is not in the image's files.
var ErrNotFound = errors.New("not found in the image")

// Lookup resolves spec (the image's User) in the image made of layers,
// lowest first. An empty spec is root (0:0). A numeric uid that
// /etc/passwd lacks runs with gid 0, as docker does; a name that it lacks
// is an error.
func Lookup(layers []string, spec string) (User, error) {
	if spec == "" {
		return User{}, nil
	}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	passwd, err := readFile(layers, "etc/passwd")
	if err != nil {
		return User{}, err
	}
	var u User
	name := ""
	uid, numeric := parseID(userPart)
	found := false
	for _, e := range parse(passwd) {
		if (numeric && e.id(2) == int64(uid)) || (!numeric && e[0] == userPart) {
			id, gid := e.id(2), e.id(3)
			if id < 0 || gid < 0 {
				return User{}, fmt.Errorf("the image's /etc/passwd has a bad entry for %q", e[0])
			}
			u.UID, u.GID, name, found = uint32(id), uint32(gid), e[0], true
			break
		}
	}
	switch {
	case !found && !numeric:
		return User{}, fmt.Errorf("user %q: %w (/etc/passwd has no such name; use a numeric uid or add the user to the image)", userPart, ErrNotFound)
	case !found:
		u.UID, u.GID = uid, 0
	}
	var group []byte
	if hasGroup || name != "" {
		if group, err = readFile(layers, "etc/group"); err != nil && !(errors.Is(err, fs.ErrNotExist) && !hasGroup) {
			return User{}, err
		}
	}
	entries := parse(group)
	if hasGroup {
		gid, numeric := parseID(groupPart)
		found := numeric
		if !numeric {
			for _, e := range entries {
				if e[0] == groupPart && e.id(2) >= 0 {
					gid, found = uint32(e.id(2)), true
					break
				}
			}
		}
		if !found {
			return User{}, fmt.Errorf("group %q: %w (/etc/group has no such name; use a numeric gid)", groupPart, ErrNotFound)
		}
		u.GID = gid
	}
	if name != "" {
		for _, e := range entries {
			if len(e) < 4 || e.id(2) < 0 || uint32(e.id(2)) == u.GID {
				continue
			}
			for _, m := range strings.Split(e[3], ",") {
				if strings.TrimSpace(m) == name {
					u.Groups = append(u.Groups, uint32(e.id(2)))
					break
				}
			}
		}
	}
	return u, nil
}

func parseID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == math.MaxUint32 {
		return 0, false
	}
	return uint32(n), true
}

type entry []string

// id is field i as an ID, -1 when it is not one.
func (e entry) id(i int) int64 {
	if i >= len(e) {
		return -1
	}
	n, ok := parseID(strings.TrimSpace(e[i]))
	if !ok {
		return -1
	}
	return int64(n)
}

func parse(data []byte) []entry {
	var out []entry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxFile)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out
}

// readFile reads rel (no leading slash) as the overlay of layers shows it.
func readFile(layers []string, rel string) ([]byte, error) {
	parts := strings.Split(rel, "/")
	for i := len(layers) - 1; i >= 0; i-- {
		data, hidden, err := readInLayer(layers[i], parts)
		if err != nil || data != nil {
			return data, err
		}
		if hidden {
			break
		}
	}
	return nil, fmt.Errorf("the image has no /%s: %w", rel, fs.ErrNotExist)
}

// readInLayer returns the file's content when this layer has it, or
// hidden when this layer hides it from the lower ones (a whiteout of it
// or of a parent, or an opaque parent directory).
func readInLayer(layer string, parts []string) (data []byte, hidden bool, err error) {
	root, err := unix.Open(layer, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false, fmt.Errorf("unable to open layer %s: %w", layer, err)
	}
	defer unix.Close(root)
	for i := range parts {
		p := filepath.Join(parts[:i+1]...)
		var st unix.Stat_t
		if err := unix.Fstatat(root, p, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
				return nil, false, nil
			}
			return nil, false, fmt.Errorf("unable to stat /%s in layer %s: %w", p, layer, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
			return nil, true, nil // a whiteout
		}
		if i < len(parts)-1 {
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				// A symlinked /etc: resolved below inside the layer.
				break
			}
			if opaque(root, p) {
				// Lower layers' contents of this directory are hidden,
				// but this layer's own entries still count.
				defer func() {
					if data == nil && err == nil {
						hidden = true
					}
				}()
			}
		}
	}
	fd, err := unix.Openat2(root, filepath.Join(parts...), &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("unable to open /%s in layer %s: %w", filepath.Join(parts...), layer, err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(layer, filepath.Join(parts...)))
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, false, fmt.Errorf("/%s in the image is not a regular file", filepath.Join(parts...))
	}
	data, err = io.ReadAll(io.LimitReader(f, maxFile))
	if err != nil {
		return nil, false, fmt.Errorf("unable to read %s: %w", f.Name(), err)
	}
	if data == nil {
		data = []byte{}
	}
	return data, false, nil
}

func opaque(root int, rel string) bool {
	buf := make([]byte, 8)
	n, err := unix.Lgetxattr(fmt.Sprintf("/proc/self/fd/%d/%s", root, rel), "trusted.overlay.opaque", buf)
	return err == nil && n == 1 && buf[0] == 'y'
}
