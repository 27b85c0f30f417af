//go:build linux

package layer

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"reconciled.dev/reconciled/internal/testutil"
)

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestDecompressFormats(t *testing.T) {
	testutil.RequireRoot(t)
	// Trailing zeros beyond the end-of-archive blocks, as a tar padded to
	// its record size has: Unpack must read them too.
	plain := append(makeTar(t, dir("d/", 0o755), reg("d/f", "hello layer\n", 0o644)), make([]byte, 8192)...)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	zenc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	zs := zenc.EncodeAll(plain, nil)
	if err := zenc.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		blob []byte
	}{
		{"gzip", gz.Bytes()},
		{"zstd", zs},
		{"uncompressed", plain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := Decompress(bytes.NewReader(tc.blob))
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			cr := &countingReader{r: rc}
			d := newLayerDir(t, t.TempDir(), "layer-"+tc.name)
			if err := Unpack(context.Background(), cr, d); err != nil {
				t.Fatal(err)
			}
			if cr.n != len(plain) {
				t.Errorf("Unpack read %d bytes of the %d-byte stream", cr.n, len(plain))
			}
			if got := readFile(t, filepath.Join(d, "d/f")); got != "hello layer\n" {
				t.Errorf("d/f = %q", got)
			}
			if err := rc.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

func TestDecompressEmptyAndGarbage(t *testing.T) {
	testutil.RequireRoot(t)
	rc, err := Decompress(bytes.NewReader(nil))
	if err != nil {
		t.Fatalf("empty blob: %v", err)
	}
	if err := Unpack(context.Background(), rc, newLayerDir(t, t.TempDir(), "layer-empty")); err != nil {
		t.Errorf("empty stream: %v", err)
	}
	rc, err = Decompress(bytes.NewReader(bytes.Repeat([]byte("not a tar at all "), 100)))
	if err != nil {
		t.Fatalf("garbage blob: %v", err)
	}
	if err := Unpack(context.Background(), rc, newLayerDir(t, t.TempDir(), "layer-garbage")); err == nil {
		t.Error("Unpack of garbage succeeded")
	} else {
		t.Logf("garbage: %v", err)
	}
	// A gzip magic with a broken header fails in Decompress.
	if _, err := Decompress(bytes.NewReader([]byte{0x1f, 0x8b, 0, 0})); err == nil {
		t.Error("Decompress of a broken gzip header succeeded")
	}
}
