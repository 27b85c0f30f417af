package desired

import (
	"flag"
	"os"
	"runtime"
	"strconv"
	"testing"
)

// watchParallel is how many parallel tests run at once unless -parallel
// says otherwise. The tests that call t.Parallel are the watcher's: they
// spend their time waiting for debounce timers and inotify events, not
// on a CPU, so the default of GOMAXPROCS (2 on CI) would only make them
// wait in line. Fuzzing keeps the default: its workers are CPU-bound.
const watchParallel = 8

func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	// -fuzz runs -parallel fuzzing processes: those want CPUs.
	fuzzing := flag.Lookup("test.fuzz").Value.String() != ""
	if !set && !fuzzing && runtime.GOMAXPROCS(0) < watchParallel {
		if err := flag.Set("test.parallel", strconv.Itoa(watchParallel)); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}
