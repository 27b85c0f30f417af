package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"reconciled.dev/reconciled/bench/internal/measure"
)

// command runs a tool with stdio on a file (a started container inherits
// it: a pipe would keep us waiting) and returns its output with any error.
func command(ctx context.Context, env []string, name string, args ...string) error {
	out, err := os.CreateTemp("", "imagebench-out-")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		data, _ := os.ReadFile(out.Name())
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(data))
	}
	return nil
}

// removeTree is rm -rf --one-file-system: a mount left behind stops it
// instead of being emptied.
func removeTree(dir string) {
	if out, err := exec.Command("rm", "-rf", "--one-file-system", dir).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "imagebench: removing %s: %v: %s\n", dir, err, out)
	}
}

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(data))[:3], " ")
}

func median64(v []int64) int64 {
	ds := make([]time.Duration, len(v))
	for i, x := range v {
		ds[i] = time.Duration(x)
	}
	return int64(measure.Median(ds))
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func mb(n int64) float64 { return float64(n) / 1e6 }

func kib2mib(k int64) float64 { return float64(k) / 1024 }

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// alternate runs a and then b in even rounds, b and then a in odd ones, so
// that neither always meets the other's dirty page cache.
func alternate(round int, a, b func() error) error {
	if round%2 == 1 {
		a, b = b, a
	}
	if err := a(); err != nil {
		return err
	}
	return b()
}
