// Package ctxio has the one io.Reader that stops when a context ends: a
// long copy (a layer being unpacked, an archive being hashed or imported)
// must not run to its end after a cancel.
package ctxio

import (
	"context"
	"io"
)

// Reader returns r whose reads fail with ctx's cause once ctx is done.
func Reader(ctx context.Context, r io.Reader) io.Reader { return reader{ctx, r} }

type reader struct {
	ctx context.Context
	r   io.Reader
}

func (c reader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.r.Read(p)
}
