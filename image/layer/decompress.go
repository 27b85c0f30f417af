package layer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// Decompress returns the uncompressed stream of a layer blob: gzip, zstd or
// uncompressed tar, detected by magic bytes (gzip 1f 8b; zstd 28 b5 2f
// fd); anything else is treated as an uncompressed tar (Unpack then fails
// if it is not one). Close releases decoder resources; it does not close r.
//
// The compressed stream is read no further than the decoder needs: to
// check a blob digest, hash r itself (a TeeReader in front of Decompress)
// and drain r after the uncompressed stream reached EOF.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(len(zstdMagic))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("unable to read the layer's first bytes: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("unable to start gzip decompression: %w", err)
		}
		return zr, nil
	case bytes.HasPrefix(magic, zstdMagic):
		// One goroutine: layers are read as one stream, and more decoders
		// only cost memory here. The window is bounded by the default
		// (WithDecoderMaxWindow: 512 MiB, the zstd limit for streaming).
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, fmt.Errorf("unable to start zstd decompression: %w", err)
		}
		return zstdReadCloser{zr}, nil
	default:
		return io.NopCloser(br), nil
	}
}

// zstdReadCloser gives zstd.Decoder (whose Close returns nothing) the
// io.ReadCloser interface.
type zstdReadCloser struct{ d *zstd.Decoder }

func (z zstdReadCloser) Read(p []byte) (int, error) { return z.d.Read(p) }

func (z zstdReadCloser) Close() error {
	z.d.Close()
	return nil
}
