package executor

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/testutil"
)

// busyTicks is how long all CPUs have been busy since boot (/proc/stat:
// everything but idle and iowait), in clock ticks.
func busyTicks(tb testing.TB) int64 {
	tb.Helper()
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		tb.Fatal(err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	var busy int64
	for i, f := range strings.Fields(line)[1:] {
		n, _ := strconv.ParseInt(f, 10, 64)
		if i != 3 && i != 4 && i < 8 { // idle, iowait; guest time is in user
			busy += n
		}
	}
	return busy
}

// BenchmarkLaunchSpare is the cost of a spare as the daemon makes one
// (runner init, mount namespace template, a default spec's namespaces):
// wall time per spare and the CPU all processes spent on it (cpu-ms/op,
// from /proc/stat: the runtime, the spawner, the monitor and the init), its
// monitor forked by the spawner or started by this process, with this
// process holding few descriptors or 2,500 (a daemon running 1,000
// containers holds about that many, most of them pidfds).
func BenchmarkLaunchSpare(b *testing.B) {
	testutil.RequireRoot(b)
	kind := unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWNET | spareRunner | spareTemplate
	for _, fds := range []int{0, 2500} {
		for _, spawner := range []bool{true, false} {
			b.Run(fmt.Sprintf("fds=%d/spawner=%v", fds, spawner), func(b *testing.B) {
				var held []int
				b.Cleanup(func() {
					for _, fd := range held {
						unix.Close(fd)
					}
				})
				for range fds {
					fd, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
					if err != nil {
						b.Fatal(err)
					}
					held = append(held, fd)
				}
				r, err := New(b.TempDir(), WithSpares(1))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { r.Close() })
				r.noSpawner = !spawner
				var pairs []*pair
				closeAll := func() {
					for _, p := range pairs {
						p.close()
						if p.cg != nil {
							r.removeSpareCgroup(p.cg)
						}
					}
					pairs = pairs[:0]
				}
				b.Cleanup(closeAll)
				// Warm: the template, the sealed programs, the spawner.
				p, err := r.launchReady(kind)
				if err != nil {
					b.Fatal(err)
				}
				pairs = append(pairs, p)
				var ticks int64
				var n int
				for b.Loop() {
					t0 := busyTicks(b)
					p, err := r.launchReady(kind)
					if err != nil {
						b.Fatal(err)
					}
					ticks += busyTicks(b) - t0
					n++
					pairs = append(pairs, p)
					if len(pairs) == 50 {
						b.StopTimer()
						closeAll()
						time.Sleep(100 * time.Millisecond) // their exits done
						b.StartTimer()
					}
				}
				b.ReportMetric(float64(ticks)*1000/100/float64(n), "cpu-ms/op")
			})
		}
	}
}
