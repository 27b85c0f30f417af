package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/internal/ctxio"
)

// knownImport is a file whose content digest was computed, with the stat
// it was computed under.
type knownImport struct {
	stamp  importStamp
	digest string
}

type importStamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64
}

func stampOfStat(st *syscall.Stat_t) importStamp {
	return importStamp{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
}

// candidate looks at one entry: its content digest, and whether it is
// complete (no writer has it open; for a layout directory, nothing in it
// changed for settle). An error refuses it (wrapping fs.ErrNotExist when
// it is gone).
func (d *importDir) candidate(ctx context.Context, p string) (digest string, ready bool, err error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return "", false, err
	}
	refuse := func(why string) error {
		return fmt.Errorf("refused: %s (run with --insecure-manifests to skip this check)", why)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return "", false, fmt.Errorf("%s is a symlink, which is not followed: put the archive itself here", p)
	case fi.Mode().IsRegular():
		if d.strict {
			if why := desired.Untrusted(p, fi); why != "" {
				return "", false, refuse(why)
			}
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return "", false, fmt.Errorf("unable to stat %s", p)
		}
		stamp := stampOfStat(st)
		if k, ok := d.known[p]; ok && k.stamp == stamp {
			return k.digest, true, nil
		}
		if !d.complete(p, time.Unix(0, stamp.ctime)) {
			return "", false, nil
		}
		digest, after, err := hashFile(ctx, p)
		if err != nil {
			return "", false, err
		}
		if after != stamp {
			return "", false, nil // written meanwhile
		}
		d.known[p] = knownImport{stamp: stamp, digest: digest}
		return digest, true, nil
	case fi.IsDir():
		return d.layoutCandidate(p, fi)
	}
	return "", false, fmt.Errorf("%s is not a regular file nor a directory", p)
}

// layoutCandidate is candidate for a directory, an OCI image layout:
// every entry in it must pass the strict check and be a regular file or a
// directory; its digest is index.json's; it is complete when no file in
// it is open for writing and nothing in it changed (ctime) for settle.
func (d *importDir) layoutCandidate(dir string, fi fs.FileInfo) (string, bool, error) {
	if d.strict {
		if why := desired.Untrusted(dir, fi); why != "" {
			return "", false, fmt.Errorf("refused: %s (run with --insecure-manifests to skip this check)", why)
		}
	}
	var newest time.Time
	var files []string
	n := 0
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n++; n > maxLayoutEntries {
			return fmt.Errorf("%s holds more than %d entries: not an OCI image layout", dir, maxLayoutEntries)
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		if !info.IsDir() && !info.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file nor a directory: an OCI image layout holds nothing else", p)
		}
		if d.strict && p != dir {
			if why := desired.Untrusted(p, info); why != "" {
				return fmt.Errorf("refused: %s (run with --insecure-manifests to skip this check)", why)
			}
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			if c := time.Unix(st.Ctim.Unix()); c.After(newest) {
				newest = c
			}
		}
		if info.Mode().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "", false, err
	}
	settled := d.now().Sub(newest) >= d.settle
	index, err := readCapped(filepath.Join(dir, "index.json"), maxIndexSize)
	_, lerr := os.Stat(filepath.Join(dir, "oci-layout"))
	if err != nil || lerr != nil {
		if !settled {
			return "", false, nil // being copied
		}
		return "", false, fmt.Errorf("%s is not an OCI image layout (it needs oci-layout and index.json)", dir)
	}
	if !settled {
		return "", false, nil
	}
	for _, f := range files {
		// Without leases, settled is all there is to go by.
		if writing, _ := openForWriting(f); writing {
			return "", false, nil
		}
	}
	sum := sha256.Sum256(index)
	return "sha256:" + hex.EncodeToString(sum[:]), true, nil
}

// complete says whether the file p can be read whole: no process has it
// open for writing. Where that cannot be told (no leases on this file
// system), it must not have changed for settle (ctime).
func (d *importDir) complete(p string, ctime time.Time) bool {
	writing, ok := openForWriting(p)
	if ok {
		return !writing
	}
	return d.now().Sub(ctime) >= d.settle
}

// openForWriting says whether a process has the regular file p open for
// writing: the kernel refuses a read lease then (EAGAIN), and grants one
// otherwise (the daemon, root, may take a lease on any file). ok is false
// when no lease could be tried (a file system without them); a symlink
// or something else than a regular file counts as written.
func openForWriting(p string) (writing, ok bool) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOFOLLOW, 0)
	if err != nil {
		return true, true
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return true, true
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_RDLCK)
	switch {
	case err == nil:
		// Closing the descriptor releases it too; this is prompt.
		unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
		return false, true
	case errors.Is(err, unix.EAGAIN):
		return true, true
	}
	return false, false
}

// hashFile returns the sha256 of p and its stamp once read (read through
// the descriptor hashed, so the two describe one file).
func hashFile(ctx context.Context, p string) (string, importStamp, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", importStamp{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, ctxio.Reader(ctx, f)); err != nil {
		return "", importStamp{}, fmt.Errorf("reading %s: %w", p, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return "", importStamp{}, os.NewSyscallError("fstat", err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), stampOfStat(&st), nil
}

// readCapped reads a file of at most max bytes.
func readCapped(p string, max int64) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", p, max)
	}
	return data, nil
}

// digestNow is the digest of p as it is now: a file's known digest while
// its stat is unchanged, a layout's index.json.
func (d *importDir) digestNow(ctx context.Context, p string) (string, bool) {
	fi, err := os.Lstat(p)
	if err != nil {
		return "", false
	}
	if fi.IsDir() {
		index, err := readCapped(filepath.Join(p, "index.json"), maxIndexSize)
		if err != nil {
			return "", false
		}
		sum := sha256.Sum256(index)
		return "sha256:" + hex.EncodeToString(sum[:]), true
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	k, known := d.known[p]
	if !ok || !known || k.stamp != stampOfStat(st) {
		return "", false
	}
	return k.digest, true
}
