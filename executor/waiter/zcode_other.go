//go:build !amd64

package waiter

const machine = 0

var code []byte

var reaperCode []byte

var initCode []byte

var probeCode []byte

var usernsCode []byte

var setupCode []byte
