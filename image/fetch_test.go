package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func TestRetryDelay(t *testing.T) {
	p := defaultRetry
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{
		{1, 500 * time.Millisecond},
		{2, time.Second},
		{3, 2 * time.Second},
		{5, 8 * time.Second},
		{6, 16 * time.Second},
		{7, 30 * time.Second},
		{60, 30 * time.Second},
	} {
		if got := p.delay(tc.failures); got != tc.want {
			t.Errorf("delay(%d) = %v, want %v", tc.failures, got, tc.want)
		}
	}
}

func TestRetryable(t *testing.T) {
	opErr := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"503", &transport.Error{StatusCode: 503}, true},
		{"500 wrapped", fmt.Errorf("fetching blob: %w", &transport.Error{StatusCode: 500}), true},
		{"429", &transport.Error{StatusCode: 429}, true},
		{"404", &transport.Error{StatusCode: 404}, false},
		{"401", &transport.Error{StatusCode: 401}, false},
		{"403", &transport.Error{StatusCode: 403}, false},
		{"digest mismatch", fmt.Errorf("blob x: %w", ErrDigestMismatch), false},
		{"digest mismatch while transferring", &transferError{ErrDigestMismatch}, false},
		{"connection reset", &url.Error{Op: "Get", URL: "http://r/v2/", Err: opErr}, true},
		{"connection refused", &url.Error{Op: "Get", URL: "http://r/v2/", Err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}, true},
		{"body cut", &transferError{io.ErrUnexpectedEOF}, true},
		{"server closed", &url.Error{Op: "Get", URL: "http://r/v2/", Err: io.EOF}, true},
		{"cancelled", &transferError{context.Canceled}, false},
		{"deadline", &url.Error{Op: "Get", URL: "http://r/v2/", Err: context.DeadlineExceeded}, false},
		{"plain http", &url.Error{Op: "Get", URL: "http://r/v2/", Err: errPlainHTTP}, false},
		{"https to http server", &url.Error{Op: "Get", URL: "https://r/v2/", Err: errors.New("http: server gave HTTP response to HTTPS client")}, false},
		{"disk full", &fsError{syscall.ENOSPC}, false},
	} {
		if got := retryable(tc.err); got != tc.want {
			t.Errorf("%s: retryable(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

type fsError struct{ errno syscall.Errno }

func (e *fsError) Error() string { return "write partial: " + e.errno.Error() }
func (e *fsError) Unwrap() error { return e.errno }

func TestRetryPolicyDo(t *testing.T) {
	p := retryPolicy{tries: 6, base: time.Millisecond, max: 4 * time.Millisecond, jitter: 0.2}
	cut := &transferError{io.ErrUnexpectedEOF}
	ctx := context.Background()

	calls := 0
	err := p.do(ctx, func() (int64, error) { calls++; return 0, cut }, nil)
	if !errors.Is(err, io.ErrUnexpectedEOF) || calls != 6 {
		t.Errorf("always cut: %d calls, %v; want 6 calls", calls, err)
	}

	calls = 0
	err = p.do(ctx, func() (int64, error) { calls++; return 0, &transport.Error{StatusCode: 404} }, nil)
	if err == nil || calls != 1 {
		t.Errorf("404: %d calls, %v; want 1 call", calls, err)
	}

	// Each try that makes progress forgets the failures before it.
	calls = 0
	err = p.do(ctx, func() (int64, error) {
		calls++
		if calls == 20 {
			return progressResets, nil
		}
		return progressResets, cut
	}, nil)
	if err != nil || calls != 20 {
		t.Errorf("cut after progress each time: %d calls, %v; want 20 calls and success", calls, err)
	}

	var waits []time.Duration
	calls = 0
	p.do(ctx, func() (int64, error) { calls++; return 0, cut }, func(_ error, _ int, w time.Duration) { waits = append(waits, w) })
	for i, w := range waits {
		base := p.delay(i + 1)
		if w < base || w > base+base/5 {
			t.Errorf("wait %d: %v, want %v to %v", i+1, w, base, base+base/5)
		}
	}

	cctx, cancel := context.WithCancel(ctx)
	long := retryPolicy{tries: 6, base: time.Hour, max: time.Hour}
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	start := time.Now()
	err = long.do(cctx, func() (int64, error) { return 0, cut }, nil)
	if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
		t.Errorf("cancelled while waiting: %v after %v", err, time.Since(start))
	}
}

func TestTokenBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newTokenBucket(1000, t0) // 1000 B/s: burst 100 B
	steps := []struct {
		at   time.Duration
		n    int
		wait time.Duration
	}{
		{0, 100, 0},                              // the burst
		{0, 100, 100 * time.Millisecond},         // owes 100 B
		{0, 50, 150 * time.Millisecond},          // after the one before
		{150 * time.Millisecond, 0, 0},           // repaid
		{time.Hour, 300, 200 * time.Millisecond}, // refills no further than the burst
	}
	for i, s := range steps {
		if got := b.take(t0.Add(s.at), s.n); got != s.wait {
			t.Errorf("step %d: take(%v, %d) says wait %v, want %v", i, s.at, s.n, got, s.wait)
		}
	}
	if c := newTokenBucket(2_000_000, t0).chunk(); c != 32<<10 {
		t.Errorf("chunk at 2 MB/s: %d", c)
	}
	if c := newTokenBucket(50, t0).chunk(); c != 5 {
		t.Errorf("chunk at 50 B/s: %d", c)
	}
}

func TestRateReaderKeepsTheRate(t *testing.T) {
	f := newFetcher(1, 1<<20) // 1 MiB/s
	start := time.Now()
	n, err := io.Copy(io.Discard, f.reader(context.Background(), io.LimitReader(zeroReader{}, 512<<10)))
	if err != nil || n != 512<<10 {
		t.Fatal(n, err)
	}
	// 512 KiB less the 100 ms burst: 0.4 s.
	if el := time.Since(start); el < 350*time.Millisecond || el > 3*time.Second {
		t.Errorf("512 KiB at 1 MiB/s took %v", el)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in                 string
		first, last, total int64
		ok                 bool
	}{
		{"bytes 100-199/200", 100, 199, 200, true},
		{"bytes 0-0/1", 0, 0, 1, true},
		{"bytes 5-9/*", 5, 9, -1, true},
		{"bytes 100-199/150", 0, 0, 0, false},
		{"bytes 200-100/300", 0, 0, 0, false},
		{"bytes */200", 0, 0, 0, false},
		{"items 1-2/3", 0, 0, 0, false},
		{"bytes -1-2/3", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	} {
		f, l, tot, err := parseContentRange(tc.in)
		if (err == nil) != tc.ok || tc.ok && (f != tc.first || l != tc.last || tot != tc.total) {
			t.Errorf("parseContentRange(%q) = %d, %d, %d, %v", tc.in, f, l, tot, err)
		}
	}
}

func TestSpaceErrorNamesTheSizes(t *testing.T) {
	e := &SpaceError{Root: "/var/lib/reconciled/images", Blobs: 20 << 20, Unpack: 40 << 20, Need: 60<<20 + 1000, Free: 8 << 20}
	msg := e.Error()
	for _, want := range []string{"/var/lib/reconciled/images", "62915560 bytes", "20971520 bytes", "41943040 bytes", "8388608 bytes (8.0 MiB) free"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
	if !errors.Is(fmt.Errorf("pulling x: %w", e), ErrNoSpace) {
		t.Error("not ErrNoSpace")
	}
}
