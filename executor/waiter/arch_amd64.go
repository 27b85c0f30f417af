//go:build amd64

package waiter

const machine = 62 // EM_X86_64
