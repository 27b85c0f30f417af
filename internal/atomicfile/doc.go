// Package atomicfile replaces files so that a reader sees the old content or
// the new, never a mix: a temp file in the same directory, written, then
// renamed over the old one. How much is made durable is the caller's choice.
//
// It must not hold state, and is not for data larger than memory.
package atomicfile
