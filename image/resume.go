package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sys/unix"
)

// A blob is received into ROOT/partial/<hex>, a name that depends only on
// its digest, so that a fetch cut by the network, a cancelled pull or a
// killed process resumes from the bytes already there (an HTTP Range
// request), in this process or the next. The file is flocked by whoever
// writes it: two processes never write it at once, and a second one waits
// for the first. Resuming re-hashes the bytes already there. When all the
// bytes are there and hash to the digest, the file is fsynced and renamed
// to blobs/sha256/<hex> while still locked.
//
// Partial files are not temp files: Open's cleaning of ROOT/tmp (an hour)
// does not touch them, and a pull deletes those untouched for partialAge
// (a day) that nobody holds locked. Garbage collection leaves them alone.

// partialAge is how long a partial file may go unwritten before a pull
// deletes it: its pull was given up.
const partialAge = 24 * time.Hour

func (s *Store) partialDir() string           { return filepath.Join(s.root, "partial") }
func (s *Store) partialPath(h v1.Hash) string { return filepath.Join(s.partialDir(), h.Hex) }

// openPartial opens (creating) the partial file of h and flocks it,
// waiting while another process holds it. The holder may have renamed the
// file into blobs/ or removed it meanwhile: then the lock taken is on a
// file no longer under that name, and it tries again.
func (s *Store) openPartial(ctx context.Context, h v1.Hash) (*os.File, error) {
	if err := os.MkdirAll(s.partialDir(), 0o700); err != nil {
		return nil, err
	}
	p := s.partialPath(h)
	for {
		l, err := lockFileContext(ctx, p, unix.LOCK_EX)
		if err != nil {
			return nil, err
		}
		same, err := isAt(l.f, p)
		if err != nil {
			l.unlock()
			return nil, err
		}
		if same {
			return l.f, nil
		}
		l.unlock()
	}
}

// isAt says whether the open file f is the file at path.
func isAt(f *os.File, path string) (bool, error) {
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	pi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(fi, pi), nil
}

// cleanPartials deletes the partial files not written for partialAge
// (now is the time to compare with) that no process holds locked.
// Failures are logged: they cost space only.
func (s *Store) cleanPartials(now time.Time) {
	entries, err := os.ReadDir(s.partialDir())
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("listing partial blobs", "dir", s.partialDir(), "err", err)
		}
		return
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || now.Sub(info.ModTime()) < partialAge {
			continue
		}
		p := filepath.Join(s.partialDir(), e.Name())
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		err = ignoringEINTR(func() error { return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) })
		if err == nil {
			if same, _ := isAt(f, p); same {
				if err := os.Remove(p); err != nil {
					s.log.Warn("removing an old partial blob", "path", p, "err", err)
				} else {
					s.log.Info("removed an old partial blob", "path", p, "bytes", info.Size())
				}
			}
		}
		f.Close()
	}
}

// download makes sure the blob desc names is in blobs/: it fetches it into
// its partial file (resuming what is there), retrying what may pass
// (s.fetch.retry), checks its size and digest, fsyncs it and renames it
// into blobs/. It takes one of the store's fetch slots, and its bytes go
// through the store's rate limit. add counts bytes: those already there
// when it resumes, too; a discarded partial subtracts its bytes again.
func (s *Store) download(ctx context.Context, rc *registryClient, desc v1.Descriptor, add func(int64)) error {
	if ok, err := s.haveBlob(desc, add); ok || err != nil {
		return err
	}
	release, err := s.fetch.acquire(ctx)
	if err != nil {
		return fmt.Errorf("fetching blob %s: %w", desc.Digest, err)
	}
	defer release()
	f, err := s.openPartial(ctx, desc.Digest)
	if err != nil {
		return fmt.Errorf("fetching blob %s: %w", desc.Digest, err)
	}
	defer f.Close() // unlocks
	// Another process may have stored it while this one waited.
	if ok, err := s.haveBlob(desc, add); ok || err != nil {
		return err
	}
	start := time.Now()
	p := &partial{f: f, desc: desc, add: add}
	if err := p.load(); err != nil {
		p.unreport()
		return fmt.Errorf("fetching blob %s: resuming from %s: %w", desc.Digest, f.Name(), err)
	}
	from := p.n
	if from > 0 {
		s.log.Info("resuming blob fetch", "digest", desc.Digest.String(), "have", from, "size", desc.Size)
	}
	err = s.fetch.retry.do(ctx, func() (int64, error) {
		before := p.n
		err := s.receivePartial(ctx, rc, p)
		return p.n - before, err
	}, func(err error, failures int, wait time.Duration) {
		s.log.Warn("blob fetch failed; retrying", "digest", desc.Digest.String(), "have", p.n, "size", desc.Size,
			"failures", failures, "wait", wait.Round(time.Millisecond), "err", err)
	})
	if err == nil {
		err = s.commitPartial(f, s.blobPath(desc.Digest))
		if err != nil {
			err = fmt.Errorf("storing blob %s: %w", desc.Digest, err)
		}
	}
	if err != nil {
		p.unreport()
		// Keep what was received for the next try, unless there is
		// nothing or it proved bad.
		if p.n == 0 || errors.Is(err, ErrDigestMismatch) {
			if rerr := os.Remove(f.Name()); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				s.log.Warn("removing a partial blob", "path", f.Name(), "err", rerr)
			}
		}
		return err
	}
	s.log.Debug("blob fetched", "digest", desc.Digest.String(), "bytes", desc.Size, "resumedAt", from,
		"duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// haveBlob says whether blobs/ holds desc's blob (then add counts it).
func (s *Store) haveBlob(desc v1.Descriptor, add func(int64)) (bool, error) {
	fi, err := os.Stat(s.blobPath(desc.Digest))
	if err != nil {
		return false, nil
	}
	if fi.Size() != desc.Size {
		return false, fmt.Errorf("blob %s: stored with %d bytes, the manifest says %d", desc.Digest, fi.Size(), desc.Size)
	}
	add(desc.Size)
	return true, nil
}

// commitPartial fsyncs f (a complete, verified partial file, still
// locked) and renames it to final, unless final exists (stored by an
// import or a writeBlob meanwhile): then f is deleted.
func (s *Store) commitPartial(f *os.File, final string) error {
	if err := f.Sync(); err != nil {
		return err
	}
	return publish(f.Name(), final)
}

// partial is a blob being received into its partial file: the file holds
// n bytes, h their hash.
type partial struct {
	f        *os.File
	desc     v1.Descriptor
	h        hash.Hash
	n        int64
	reported int64 // bytes counted with add
	add      func(int64)
	// startedOver: the content was discarded once already (it was
	// longer than the blob or did not match its digest).
	startedOver bool
}

// load reads back the partial file: its bytes are hashed and counted. A
// file longer than the blob is emptied.
func (p *partial) load() error {
	p.h = sha256.New()
	p.n = 0
	fi, err := p.f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if size > p.desc.Size {
		size = 0
	}
	if err := p.f.Truncate(size); err != nil {
		return err
	}
	if _, err := io.Copy(p.h, io.NewSectionReader(p.f, 0, size)); err != nil {
		return err
	}
	p.n = size
	p.report()
	return nil
}

// reset empties the partial file.
func (p *partial) reset() error {
	p.h = sha256.New()
	p.n = 0
	p.report()
	return p.f.Truncate(0)
}

// report brings the count given to add up to date.
func (p *partial) report() {
	if d := p.n - p.reported; d != 0 {
		p.add(d)
		p.reported = p.n
	}
}

// unreport takes back what was counted: the blob is not stored.
func (p *partial) unreport() {
	if p.reported != 0 {
		p.add(-p.reported)
		p.reported = 0
	}
}

// Write appends to the file and the hash.
func (p *partial) Write(b []byte) (int, error) {
	n, err := p.f.WriteAt(b, p.n)
	p.h.Write(b[:n])
	p.n += int64(n)
	p.report()
	return n, err
}

// errStartOver is wrapped by what makes a partial file's content useless:
// it is discarded and the fetch starts over, once.
var errStartOver = errors.New("the partial content is discarded")

// receivePartial is one try: it asks the registry for the bytes the
// partial file lacks (all of them if it is empty) and appends them, then
// verifies the whole. What is received stays in the file (and p.n) when
// the try fails. Content that proves bad (longer than the blob, or not
// matching its digest) is discarded and fetched again once, in the same
// try.
func (s *Store) receivePartial(ctx context.Context, rc *registryClient, p *partial) error {
	for {
		err := s.receiveOnce(ctx, rc, p)
		if !errors.Is(err, errStartOver) {
			return err
		}
		if p.startedOver {
			return err
		}
		p.startedOver = true
		s.log.Warn("discarding the partial blob; fetching it again", "digest", p.desc.Digest.String(), "err", err)
		if rerr := p.reset(); rerr != nil {
			return errors.Join(err, rerr)
		}
	}
}

func (s *Store) receiveOnce(ctx context.Context, rc *registryClient, p *partial) error {
	d := p.desc
	if p.n < d.Size {
		if err := s.appendFrom(ctx, rc, p); err != nil {
			return err
		}
	}
	if p.n > d.Size {
		return fmt.Errorf("blob %s: got %d bytes or more, the manifest says %d: %w", d.Digest, p.n, d.Size, errStartOver)
	}
	if got := hex.EncodeToString(p.h.Sum(nil)); got != d.Digest.Hex {
		return fmt.Errorf("blob %s: %w (it hashes to sha256:%s): %w", d.Digest, ErrDigestMismatch, got, errStartOver)
	}
	return nil
}

// appendFrom requests the blob from byte p.n on (all of it when p.n is
// 0) and appends what comes to p. A 206 must say, in Content-Range, that
// it holds the bytes asked for up to the end; a 200 (a registry that
// ignores Range) starts over from byte 0.
func (s *Store) appendFrom(ctx context.Context, rc *registryClient, p *partial) error {
	d := p.desc
	if err := p.f.Truncate(p.n); err != nil {
		return err
	}
	resp, err := rc.getBlob(ctx, d.Digest, p.n)
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusRequestedRangeNotSatisfiable && p.n > 0 {
		// The registry does not serve the range asked for: try again
		// from the start.
		if rerr := p.reset(); rerr != nil {
			return rerr
		}
		return &transferError{fmt.Errorf("fetching blob %s: %w; fetching all of it again", d.Digest, err)}
	}
	if err != nil {
		return fmt.Errorf("fetching blob %s: %w", d.Digest, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		first, last, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || first != p.n || last != d.Size-1 || (total >= 0 && total != d.Size) ||
			(resp.ContentLength >= 0 && resp.ContentLength != last-first+1) {
			if rerr := p.reset(); rerr != nil {
				return rerr
			}
			return &transferError{fmt.Errorf("blob %s: asked for bytes %d-, the registry sent Content-Range %q (Content-Length %d); fetching all of it again",
				d.Digest, p.n, resp.Header.Get("Content-Range"), resp.ContentLength)}
		}
	default: // 200
		if p.n > 0 {
			s.log.Info("the registry ignored the range; fetching the whole blob", "digest", d.Digest.String(), "had", p.n)
			if err := p.reset(); err != nil {
				return err
			}
		}
		if resp.ContentLength >= 0 && resp.ContentLength != d.Size {
			return fmt.Errorf("blob %s: the registry sends %d bytes, the manifest says %d", d.Digest, resp.ContentLength, d.Size)
		}
	}
	body := transferReader{s.fetch.reader(ctx, resp.Body)}
	want := d.Size - p.n
	n, err := io.Copy(p, io.LimitReader(body, want+1))
	if err != nil {
		return fmt.Errorf("fetching blob %s: %w", d.Digest, err)
	}
	if n < want {
		return &transferError{fmt.Errorf("fetching blob %s: the body ended after %d of %d bytes: %w", d.Digest, n, want, io.ErrUnexpectedEOF)}
	}
	return nil
}

// getBlob requests a blob, from byte from on when from > 0 (a Range
// request); 200 and 206 are answers, another status is a
// *transport.Error.
func (rc *registryClient) getBlob(ctx context.Context, h v1.Hash, from int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rc.url("blobs", h.String()), nil)
	if err != nil {
		return nil, err
	}
	if from > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(from, 10)+"-")
	}
	resp, err := rc.client.Do(req)
	if err != nil {
		return nil, err
	}
	if err := transport.CheckError(resp, http.StatusOK, http.StatusPartialContent); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp, nil
}

// parseContentRange parses "bytes FIRST-LAST/TOTAL" (TOTAL may be "*",
// returned as -1).
func parseContentRange(v string) (first, last, total int64, err error) {
	bad := fmt.Errorf("Content-Range %q: not bytes FIRST-LAST/TOTAL", v)
	rest, ok := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !ok {
		return 0, 0, 0, bad
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, bad
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, bad
	}
	if first, err = strconv.ParseInt(a, 10, 64); err != nil || first < 0 {
		return 0, 0, 0, bad
	}
	if last, err = strconv.ParseInt(b, 10, 64); err != nil || last < first {
		return 0, 0, 0, bad
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total <= last {
			return 0, 0, 0, bad
		}
	}
	return first, last, total, nil
}
