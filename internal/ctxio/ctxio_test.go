package ctxio

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReaderStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	r := Reader(ctx, strings.NewReader("abcdef"))
	buf := make([]byte, 3)
	if n, err := r.Read(buf); n != 3 || err != nil {
		t.Fatalf("read before the cancel: %d, %v", n, err)
	}
	why := errors.New("stopped")
	cancel(why)
	if _, err := io.ReadAll(r); !errors.Is(err, why) {
		t.Errorf("read after the cancel: %v, want the cause", err)
	}
}
