// Package registry runs a real OCI registry for tests (Debian's
// docker-registry, distribution 2.8) on a loopback address, and builds test
// images in Go from the static busybox binary: layers from files or raw tar
// headers (hostile ones included), single-platform images and
// multi-platform indexes, pushed with go-containerregistry.
//
// Every registry it starts is killed, by the PID it started, in
// t.Cleanup. Without the binary a test skips, or fails under
// RECONCILED_REQUIRE_ROOT=1.
//
// It must not be imported by non-test code, and must not import the image
// store it serves: the store's tests import it.
package registry
