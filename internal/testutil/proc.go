package testutil

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

// Alive says whether pid runs: it exists and is not a zombie (or dead).
func Alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	return i > 0 && len(data) > i+2 && data[i+2] != 'Z' && data[i+2] != 'X'
}

// Tail returns the last n lines of s (a log to print with a failure).
func Tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
