package testutil

import "strings"

// Tail returns the last n lines of s (a log to print with a failure).
func Tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
