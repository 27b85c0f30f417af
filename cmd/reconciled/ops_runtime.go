package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/executor"
)

// runtimeOps are the `runtime` subcommands that operate a live container;
// runtime.go's dispatch hands them to runtimeOp.
const runtimeOpsSynopsis = `  exec [-t] [-e KEY=VAL] [--user UID[:GID]] [--timeout DUR] ID -- CMD [ARG...]
  pause ID / resume ID
  ps [-o json] ID
  stats [-o json] [ID]
  events [--stats] [--interval DUR] ID
  update [--memory BYTES] [--memory-reservation BYTES] [--memory-swap BYTES] [--cpu-share N] [--cpu-period N]
         [--cpu-quota N] [--cpu-rt-period N] [--cpu-rt-runtime N] [--cpuset-cpus LIST] [--cpuset-mems LIST]
         [--pids-limit N] [--blkio-weight N] [-r FILE] ID`

// runtimeOp runs `runtime SUB ARGS` on the state root; rx is what exec
// takes from runc's global flags.
func runtimeOp(ctx context.Context, root, sub string, args []string, stdout, stderr io.Writer, rx *runcExecEnv) int {
	if sub == "exec" {
		return execCommand(ctx, "runtime exec", root, args, stdout, stderr, rx)
	}
	return opsCommand(ctx, sub, root, args, stdout, stderr)
}

// eventsFlags are events' flags, runc's: --stats, --interval.
type eventsFlags struct {
	stats       bool
	interval    time.Duration
	intervalSet bool // --interval was given
}

// defaultEventsInterval is runc events' default: a stats event every 5s.
const defaultEventsInterval = 5 * time.Second

// runEvents is `events`: with --stats one stats event; else container
// id's events as JSON lines until it exits, with a stats event every
// interval among them (the first at once; runc's default of 5s unless
// --interval says otherwise; --interval 0: the events alone).
func runEvents(ctx context.Context, rt *executor.Runtime, id string, f eventsFlags, w io.Writer) error {
	if f.interval < 0 {
		return fmt.Errorf("--interval %s: give a positive duration", f.interval)
	}
	if f.stats && f.intervalSet {
		return errors.New("--stats prints once: leave out --interval")
	}
	enc := json.NewEncoder(w)
	if f.stats {
		ev, err := statsEvent(ctx, rt, id)
		if err != nil {
			return err
		}
		return enc.Encode(ev)
	}
	if f.interval == 0 {
		return rt.Events(ctx, id, func(e executor.Event) error { return enc.Encode(runcEvent(e)) })
	}
	// The exit event is the last line: a stats event read while the
	// container was dying is dropped once the exit is out.
	var mu sync.Mutex
	exited := false
	emit := func(v any, exit bool) error {
		mu.Lock()
		defer mu.Unlock()
		if exited {
			return nil
		}
		exited = exit
		return enc.Encode(v)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ticks := make(chan error, 1)
	go func() {
		t := time.NewTicker(f.interval)
		defer t.Stop()
		for {
			ev, err := statsEvent(ctx, rt, id)
			if err == nil {
				err = emit(ev, false)
			}
			if err != nil && ctx.Err() == nil {
				// A container that is exiting has no stats: its exit
				// event ends the stream.
				if st, serr := rt.State(ctx, id); serr != nil || st.Status != executor.StatusStopped {
					ticks <- err
					cancel() // ends the event stream too
					return
				}
			}
			select {
			case <-ctx.Done():
				ticks <- nil
				return
			case <-t.C:
			}
		}
	}()
	err := rt.Events(ctx, id, func(e executor.Event) error { return emit(runcEvent(e), e.Type == executor.EventExit) })
	cancel()
	if terr := <-ticks; terr != nil {
		return terr
	}
	return err
}

// runcOOMEvent is runc's OOM event, {"type":"oom","id":ID} and nothing
// else (runc's types.Event without data): runc's events.bats and scripts
// written against runc match that line whole.
type runcOOMEvent struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// runcEvent is e as `events` prints it: an OOM event in runc's shape,
// any other (exit, which runc has not) as the executor reports it.
func runcEvent(e executor.Event) any {
	if e.Type == executor.EventOOM {
		return runcOOMEvent{Type: e.Type, ID: e.ID}
	}
	return e
}

// runcStatsEvent is runc's `events --stats` object: {"type":"stats",
// "id":ID,"data":{...}} with data in runc's types/events.go shape (the
// fields a cgroup gives here; the others empty).
type runcStatsEvent struct {
	Type string    `json:"type"`
	ID   string    `json:"id"`
	Data runcStats `json:"data"`
}

type runcStats struct {
	CPU struct {
		Usage struct {
			Total  uint64 `json:"total,omitempty"`
			Kernel uint64 `json:"kernel"`
			User   uint64 `json:"user"`
		} `json:"usage"`
	} `json:"cpu"`
	Memory struct {
		Usage runcMemoryEntry   `json:"usage"`
		Swap  runcMemoryEntry   `json:"swap"`
		Raw   map[string]uint64 `json:"raw,omitempty"`
	} `json:"memory"`
	Pids struct {
		Current uint64 `json:"current,omitempty"`
		Limit   uint64 `json:"limit,omitempty"`
	} `json:"pids"`
	Blkio   struct{}       `json:"blkio"`
	Hugetlb map[string]any `json:"hugetlb"`
}

type runcMemoryEntry struct {
	Limit   uint64 `json:"limit"`
	Usage   uint64 `json:"usage,omitempty"`
	Max     uint64 `json:"max,omitempty"`
	Failcnt uint64 `json:"failcnt"`
}

func statsEvent(ctx context.Context, rt *executor.Runtime, id string) (*runcStatsEvent, error) {
	s, err := rt.Stats(ctx, id)
	if err != nil {
		return nil, err
	}
	ev := &runcStatsEvent{Type: "stats", ID: id}
	d := &ev.Data
	d.CPU.Usage.Total, d.CPU.Usage.Kernel, d.CPU.Usage.User = s.CPUUsageNanos, s.CPUSysNanos, s.CPUUserNanos
	limit := s.MemoryLimit
	if limit == 0 {
		limit = math.MaxUint64 // unlimited, as runc reads "max"
	}
	d.Memory.Usage = runcMemoryEntry{Limit: limit, Usage: s.MemoryUsage, Max: s.MemoryMaxUsed}
	d.Memory.Swap = runcMemoryEntry{Limit: math.MaxUint64, Usage: s.SwapUsage}
	if s.OOMKills > 0 {
		d.Memory.Raw = map[string]uint64{"oom_kill": s.OOMKills}
	}
	d.Pids.Current, d.Pids.Limit = s.PidsCurrent, s.PidsLimit
	d.Hugetlb = map[string]any{}
	return ev, nil
}

// updateFlags are runtime update's flags, runc 1.1 update's: each given
// flag changes its value only, the others keep theirs.
type updateFlags struct {
	fs                                    *flag.FlagSet
	memory, memoryReservation, memorySwap *int64
	cpuQuota, cpuRtRuntime, pidsLimit     *int64
	cpuPeriod, cpuShares, cpuRtPeriod     *uint64
	blkioWeight                           *uint64
	cpusetCpus, cpusetMems                *string
	file                                  *string
	raw                                   map[string]string // the byte flags as given
}

func addUpdateFlags(fs *flag.FlagSet) *updateFlags {
	u := &updateFlags{
		fs:                fs,
		raw:               map[string]string{},
		memory:            new(int64),
		memoryReservation: new(int64),
		memorySwap:        new(int64),
		cpuQuota:          fs.Int64("cpu-quota", 0, "CPU CFS quota in microseconds per period (-1: unlimited)"),
		cpuPeriod:         fs.Uint64("cpu-period", 0, "CPU CFS period in microseconds"),
		cpuShares:         fs.Uint64("cpu-shares", 0, "CPU shares (relative weight)"),
		cpuRtPeriod:       fs.Uint64("cpu-rt-period", 0, "CPU realtime period in microseconds (cgroup v1)"),
		cpuRtRuntime:      fs.Int64("cpu-rt-runtime", 0, "CPU realtime runtime in microseconds per realtime period (cgroup v1)"),
		cpusetCpus:        fs.String("cpuset-cpus", "", "CPUs the container may run on (0-3, 0,1)"),
		cpusetMems:        fs.String("cpuset-mems", "", "memory nodes the container may use (0-3, 0,1)"),
		pidsLimit:         fs.Int64("pids-limit", 0, "maximum number of processes (-1: unlimited)"),
		blkioWeight:       fs.Uint64("blkio-weight", 0, "block I/O weight, 10 to 1000 (needs the BFQ or CFQ I/O scheduler)"),
		file:              fs.String("r", "", "read the resources from FILE, JSON of the runtime spec's linux.resources (- for stdin)"),
	}
	fs.Uint64Var(u.cpuShares, "cpu-share", 0, "same as --cpu-shares (runc's spelling)")
	bytesFlag := func(p *int64, name, usage string) {
		fs.Func(name, usage+": bytes, with a k, m, g or t suffix (powers of 1024), or -1 for no limit", func(s string) error {
			n, err := parseBytes(s)
			if err != nil {
				return err
			}
			*p, u.raw[name] = n, s
			return nil
		})
	}
	bytesFlag(u.memory, "memory", "memory limit")
	bytesFlag(u.memoryReservation, "memory-reservation", "memory soft limit")
	bytesFlag(u.memorySwap, "memory-swap", "memory plus swap limit")
	return u
}

// parseBytes reads a byte count as runc's flags take it: "-1", "1048576",
// "512k", "64m", "1.5g", "2GiB" (binary units, case ignored).
func parseBytes(s string) (int64, error) {
	if s == "-1" {
		return -1, nil
	}
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "b"), "i")
	mult := 1.0
	if t != "" {
		if i := strings.IndexByte("kmgtp", t[len(t)-1]); i >= 0 {
			mult = math.Pow(1024, float64(i+1))
			t = t[:len(t)-1]
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || f < 0 || f*mult > math.MaxInt64 {
		return 0, fmt.Errorf("want a byte count such as 67108864, 64m or 1g, or -1, got %q", s)
	}
	return int64(f * mult), nil
}

// updateStep is one cgroup write of an update and the flags that asked for
// it (they name it when it fails).
type updateStep struct {
	flags []string
	res   *specs.LinuxResources
}

// steps builds the update from -r FILE, or from the flags given (only
// those), one step per controller in runc's order: memory, cpu, realtime,
// cpuset, pids, blkio.
func (u *updateFlags) steps() ([]updateStep, error) {
	set := map[string]bool{}
	given := map[string]string{}
	u.fs.Visit(func(f *flag.Flag) {
		name := f.Name
		if name == "cpu-share" {
			name = "cpu-shares"
		}
		v, ok := u.raw[f.Name]
		if !ok {
			v = f.Value.String()
		}
		set[name] = true
		given[name] = "--" + f.Name + " " + v
	})
	if set["r"] {
		if len(set) > 1 {
			return nil, fmt.Errorf("-r and the other resource flags are exclusive")
		}
		var data []byte
		var err error
		if *u.file == "-" {
			data, err = io.ReadAll(os.Stdin)
		} else {
			data, err = os.ReadFile(*u.file)
		}
		if err != nil {
			return nil, fmt.Errorf("-r %s: unable to read the resources: %w", *u.file, err)
		}
		var r specs.LinuxResources
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("-r %s: not linux.resources JSON: %w", *u.file, err)
		}
		return []updateStep{{flags: []string{"-r " + *u.file}, res: &r}}, nil
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("nothing to update: give --memory, --memory-reservation, --memory-swap, --cpu-share, --cpu-period, --cpu-quota, --cpu-rt-period, --cpu-rt-runtime, --cpuset-cpus, --cpuset-mems, --pids-limit, --blkio-weight or -r FILE")
	}
	if set["blkio-weight"] && (*u.blkioWeight < 10 || *u.blkioWeight > 1000) {
		return nil, fmt.Errorf("--blkio-weight %d: give a weight from 10 to 1000", *u.blkioWeight)
	}
	if set["cpu-rt-runtime"] && *u.cpuRtRuntime < 0 {
		return nil, fmt.Errorf("--cpu-rt-runtime %d: give 0 or more microseconds", *u.cpuRtRuntime)
	}
	var steps []updateStep
	step := func(names []string, build func(r *specs.LinuxResources)) {
		var flags []string
		for _, n := range names {
			if set[n] {
				flags = append(flags, given[n])
			}
		}
		if len(flags) == 0 {
			return
		}
		var r specs.LinuxResources
		build(&r)
		steps = append(steps, updateStep{flags: flags, res: &r})
	}
	pick := func(name string, p *int64) *int64 {
		if set[name] {
			return p
		}
		return nil
	}
	pickU := func(name string, p *uint64) *uint64 {
		if set[name] {
			return p
		}
		return nil
	}
	step([]string{"memory", "memory-reservation", "memory-swap"}, func(r *specs.LinuxResources) {
		r.Memory = &specs.LinuxMemory{Limit: pick("memory", u.memory), Reservation: pick("memory-reservation", u.memoryReservation), Swap: pick("memory-swap", u.memorySwap)}
	})
	step([]string{"cpu-shares", "cpu-period", "cpu-quota"}, func(r *specs.LinuxResources) {
		r.CPU = &specs.LinuxCPU{Shares: pickU("cpu-shares", u.cpuShares), Period: pickU("cpu-period", u.cpuPeriod), Quota: pick("cpu-quota", u.cpuQuota)}
	})
	step([]string{"cpu-rt-period", "cpu-rt-runtime"}, func(r *specs.LinuxResources) {
		r.CPU = &specs.LinuxCPU{RealtimePeriod: pickU("cpu-rt-period", u.cpuRtPeriod), RealtimeRuntime: pick("cpu-rt-runtime", u.cpuRtRuntime)}
	})
	step([]string{"cpuset-cpus", "cpuset-mems"}, func(r *specs.LinuxResources) {
		r.CPU = &specs.LinuxCPU{Cpus: *u.cpusetCpus, Mems: *u.cpusetMems}
	})
	step([]string{"pids-limit"}, func(r *specs.LinuxResources) {
		r.Pids = &specs.LinuxPids{Limit: u.pidsLimit}
	})
	step([]string{"blkio-weight"}, func(r *specs.LinuxResources) {
		w := uint16(*u.blkioWeight)
		r.BlockIO = &specs.LinuxBlockIO{Weight: &w}
	})
	return steps, nil
}

// runUpdate applies the steps in order; a failed one stops the update and
// its error names the flags it came from.
func runUpdate(ctx context.Context, rt *executor.Runtime, id string, u *updateFlags) error {
	steps, err := u.steps()
	if err != nil {
		return err
	}
	for _, s := range steps {
		if err := rt.Update(ctx, id, s.res); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(s.flags, ", "), err)
		}
	}
	return nil
}
