package image

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// DefaultPullConcurrency is Options.PullConcurrency when it is not set.
const DefaultPullConcurrency = 3

// fetcher holds what the blob fetches of one store share: how many may
// run at once, the download rate, and how a failed fetch is retried.
type fetcher struct {
	slots chan struct{} // one per blob fetch that may run; nil: no limit
	rate  *tokenBucket  // nil: unlimited
	retry retryPolicy
}

// newFetcher returns the fetcher of a store: concurrency blob fetches at
// once (DefaultPullConcurrency when 0 or less), rate bytes per second in
// all (unlimited when 0 or less).
func newFetcher(concurrency int, rate int64) fetcher {
	if concurrency <= 0 {
		concurrency = DefaultPullConcurrency
	}
	f := fetcher{slots: make(chan struct{}, concurrency), retry: defaultRetry}
	if rate > 0 {
		f.rate = newTokenBucket(rate, time.Now())
	}
	return f
}

// concurrency is how many blob fetches may run at once.
func (f *fetcher) concurrency() int {
	if f.slots == nil {
		return DefaultPullConcurrency
	}
	return cap(f.slots)
}

// acquire waits for a fetch slot; release gives it back.
func (f *fetcher) acquire(ctx context.Context) (release func(), err error) {
	if f.slots == nil {
		return func() {}, nil
	}
	select {
	case f.slots <- struct{}{}:
		return func() { <-f.slots }, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// reader returns r limited to the store's rate (r itself if unlimited).
func (f *fetcher) reader(ctx context.Context, r io.Reader) io.Reader {
	if f.rate == nil {
		return r
	}
	return &rateReader{ctx: ctx, r: r, b: f.rate}
}

// retryPolicy is how a pull retries what failed for a reason that may
// pass (see retryable): up to tries tries in a row, waiting base before
// the second, doubling up to max, each wait lengthened by up to jitter
// (a fraction) at random so that clients that failed together do not come
// back together.
type retryPolicy struct {
	tries     int
	base, max time.Duration
	jitter    float64
}

// defaultRetry: 6 tries, 0.5 s, 1 s, 2 s, 4 s, 8 s apart (+ up to 20 %);
// the doubling stops at 30 s.
var defaultRetry = retryPolicy{tries: 6, base: 500 * time.Millisecond, max: 30 * time.Second, jitter: 0.2}

// delay is the wait after the failures'th failure in a row (1 or more),
// before jitter.
func (p retryPolicy) delay(failures int) time.Duration {
	d := p.base
	for i := 1; i < failures && d < p.max; i++ {
		d *= 2
	}
	return min(d, p.max)
}

// progressResets is how many bytes one try must receive to count as
// progress: the failures before it are forgotten, so that a link that
// drops every few megabytes still completes a large blob.
const progressResets = 1 << 20

// do calls try until it succeeds, fails with an error that is not
// retryable, the context ends, or p.tries tries in a row fail. try returns
// how many bytes it received (see progressResets). onRetry is told about
// each retry before the wait.
func (p retryPolicy) do(ctx context.Context, try func() (int64, error), onRetry func(err error, failures int, wait time.Duration)) error {
	failures := 0
	for {
		got, err := try()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !retryable(err) {
			return err
		}
		if got >= progressResets {
			failures = 0
		}
		failures++
		if failures >= p.tries {
			return fmt.Errorf("%w (gave up after %d tries in a row)", err, failures)
		}
		wait := p.delay(failures)
		wait += time.Duration(rand.Float64() * p.jitter * float64(wait))
		if onRetry != nil {
			onRetry(err, failures, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (retrying after: %v)", context.Cause(ctx), err)
		case <-t.C:
		}
	}
}

// transferError marks an error of the network while a response body was
// read: worth retrying, unlike one of the disk the body is written to.
type transferError struct{ err error }

func (e *transferError) Error() string { return e.err.Error() }
func (e *transferError) Unwrap() error { return e.err }

// transferReader marks r's errors (but io.EOF) as transferErrors.
type transferReader struct{ r io.Reader }

func (t transferReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		err = &transferError{err}
	}
	return n, err
}

// retryable says whether a failed request may succeed if tried again: a
// network error (refused, reset, cut, timed out) or a 5xx or 429 status.
// Not: a 4xx status (404, 401, 403, ...), content that does not match its
// digest, plain HTTP refused, a certificate that does not verify, the
// context's end, or a local (disk) error.
func retryable(err error) bool {
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode == 429 || te.StatusCode >= 500
	}
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, ErrDigestMismatch), errors.Is(err, errPlainHTTP),
		errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &hn), errors.As(err, &ci):
		return false
	}
	var tr *transferError
	var op *net.OpError
	var ne net.Error
	switch {
	case errors.As(err, &tr), errors.As(err, &op):
		return true
	case errors.As(err, &ne) && ne.Timeout():
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED)
}

// tokenBucket limits a byte rate shared by several readers. It fills at
// rate bytes a second up to burst; a taker may take more than there is
// (the count goes negative) and waits until the debt is repaid, so takers
// are served in the order they came and the long-run rate holds.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64 // bytes per second
	burst  float64
	tokens float64
	last   time.Time
}

// newTokenBucket returns a full bucket for rate bytes a second (more
// than 0). The burst is a tenth of a second's worth, at most 256 KiB and
// at least one byte: a pull of 4 MB at 2 MB/s takes about 1.9 s.
func newTokenBucket(rate int64, now time.Time) *tokenBucket {
	burst := max(1, min(float64(rate)/10, 256<<10))
	return &tokenBucket{rate: float64(rate), burst: burst, tokens: burst, last: now}
}

// take takes n bytes' worth at now and returns how long the taker must
// wait before it uses them.
func (b *tokenBucket) take(now time.Time, n int) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(b.burst, b.tokens+el.Seconds()*b.rate)
		b.last = now
	}
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// chunk is the most one read takes at a time: no more than the burst, so
// that a slow rate is not met in large steps.
func (b *tokenBucket) chunk() int { return max(1, min(int(b.burst), 32<<10)) }

// rateReader reads from r no faster than its bucket allows.
type rateReader struct {
	ctx context.Context
	r   io.Reader
	b   *tokenBucket
}

func (l *rateReader) Read(p []byte) (int, error) {
	if c := l.b.chunk(); len(p) > c {
		p = p[:c]
	}
	n, err := l.r.Read(p)
	if n > 0 {
		if d := l.b.take(time.Now(), n); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-l.ctx.Done():
				t.Stop()
				return n, context.Cause(l.ctx)
			case <-t.C:
			}
		}
	}
	return n, err
}

// ErrNoSpace is wrapped by the *SpaceError of a pull that would not fit.
var ErrNoSpace = errors.New("not enough free space for the image")

// SpaceError is a pull refused before it fetched anything because the
// file system of the image root has too little room.
type SpaceError struct {
	Root string
	// Blobs is the bytes of blobs still to fetch (their sizes in the
	// manifest, less what partial files already hold); Unpack the
	// estimate for unpacking the layers (unpackFactor times their
	// compressed size); Need their sum; Free what statfs gives an
	// unprivileged writer (f_bavail * f_bsize).
	Blobs, Unpack, Need, Free int64
}

func (e *SpaceError) Error() string {
	return fmt.Sprintf("%v in %s: the pull needs about %s (%s of blobs to fetch, %s estimated for unpacking the layers), %s free",
		ErrNoSpace, e.Root, sizeString(e.Need), sizeString(e.Blobs), sizeString(e.Unpack), sizeString(e.Free))
}

func (e *SpaceError) Unwrap() error { return ErrNoSpace }

func sizeString(n int64) string {
	return fmt.Sprintf("%d bytes (%.1f MiB)", n, float64(n)/(1<<20))
}

// unpackFactor estimates an unpacked layer's size from its compressed
// size: gzip shrinks typical root file systems 2 to 3 times, but
// incompressible content (already compressed files) not at all. The
// estimate is rough on purpose; it refuses what clearly cannot fit
// without refusing much that would.
const unpackFactor = 2

// checkSpace refuses (with a *SpaceError) a pull of m that would not fit
// in the image root: the blobs not stored yet (less the bytes their
// partial files hold) plus unpackFactor times the compressed size of each
// layer not unpacked yet. Which layers are unpacked is known from the
// config when it is stored; without it, a layer whose blob is stored
// counts as unpacked. Pulls running at the same time are not accounted
// for: this is an estimate made before the pull starts.
func (s *Store) checkSpace(m *v1.Manifest, manifestSize int64) error {
	var blobs, unpack int64
	missing := func(d v1.Descriptor) bool {
		if _, err := os.Stat(s.blobPath(d.Digest)); err == nil {
			return false
		}
		have := int64(0)
		if fi, err := os.Stat(s.partialPath(d.Digest)); err == nil && fi.Size() <= d.Size {
			have = fi.Size()
		}
		blobs += d.Size - have
		return true
	}
	var diffIDs []v1.Hash
	if !missing(m.Config) {
		if raw, err := s.readBlob(m.Config.Digest); err == nil {
			if cfg, err := v1.ParseConfigFile(bytes.NewReader(raw)); err == nil && len(cfg.RootFS.DiffIDs) == len(m.Layers) {
				diffIDs = cfg.RootFS.DiffIDs
			}
		}
	}
	for i, l := range m.Layers {
		blobMissing := missing(l)
		unpacked := !blobMissing
		if diffIDs != nil {
			fi, err := os.Lstat(s.layerPath(diffIDs[i]))
			unpacked = err == nil && fi.IsDir()
		}
		if !unpacked {
			unpack += unpackFactor * l.Size
		}
	}
	if blobs == 0 && unpack == 0 {
		return nil
	}
	need := blobs + unpack + manifestSize
	free, err := freeBytes(s.root) // import.go
	if err != nil {
		return err
	}
	if need > free {
		return &SpaceError{Root: s.root, Blobs: blobs, Unpack: unpack, Need: need, Free: free}
	}
	return nil
}
