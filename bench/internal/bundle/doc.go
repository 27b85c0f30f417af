// Package bundle writes the busybox bundle both benchmarks run, so that
// their figures are comparable.
package bundle
