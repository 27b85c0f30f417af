package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/executor"
)

// runtimeOps are the `runtime` subcommands that operate a live container;
// runtime.go's dispatch hands them to runtimeOp.
const runtimeOpsSynopsis = `  exec [-t] [-e KEY=VAL] [--user UID[:GID]] [--timeout DUR] ID -- CMD [ARG...]
  pause ID / resume ID
  ps [-o json] ID
  stats [-o json] [ID]
  events ID
  update [--memory BYTES] [--cpu-quota N] [--cpu-period N] [--cpu-shares N] [--pids-limit N] [-r FILE] ID`

// runtimeOp runs `runtime SUB ARGS` on the state root.
func runtimeOp(ctx context.Context, root, sub string, args []string, stdout, stderr io.Writer) int {
	if sub == "exec" {
		return execCommand(ctx, "runtime exec", root, args, stdout, stderr)
	}
	return opsCommand(ctx, sub, root, args, stdout, stderr)
}

// streamEvents prints container id's events as JSON lines until it exits.
func streamEvents(ctx context.Context, rt *executor.Runtime, id string, w io.Writer) error {
	enc := json.NewEncoder(w)
	return rt.Events(ctx, id, func(e executor.Event) error { return enc.Encode(e) })
}

// updateFlags are runtime update's flags, like runc update's.
type updateFlags struct {
	fs                          *flag.FlagSet
	memory, cpuQuota, pidsLimit *int64
	cpuPeriod, cpuShares        *uint64
	file                        *string
}

func addUpdateFlags(fs *flag.FlagSet) *updateFlags {
	return &updateFlags{
		fs:        fs,
		memory:    fs.Int64("memory", 0, "memory limit in bytes (-1: unlimited)"),
		cpuQuota:  fs.Int64("cpu-quota", 0, "CPU CFS quota in microseconds per period (-1: unlimited)"),
		cpuPeriod: fs.Uint64("cpu-period", 0, "CPU CFS period in microseconds"),
		cpuShares: fs.Uint64("cpu-shares", 0, "CPU shares (relative weight)"),
		pidsLimit: fs.Int64("pids-limit", 0, "maximum number of processes (-1: unlimited)"),
		file:      fs.String("r", "", "read the resources from FILE, JSON of the runtime spec's linux.resources (- for stdin)"),
	}
}

// resources builds the update from -r FILE or from the flags given (only
// those: the others keep their values).
func (u *updateFlags) resources() (*specs.LinuxResources, error) {
	set := map[string]bool{}
	u.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *u.file != "" {
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
			return nil, fmt.Errorf("unable to read the resources: %w", err)
		}
		var r specs.LinuxResources
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("unable to parse %s as linux.resources JSON: %w", *u.file, err)
		}
		return &r, nil
	}
	var r specs.LinuxResources
	if set["memory"] {
		r.Memory = &specs.LinuxMemory{Limit: u.memory}
	}
	if set["cpu-quota"] || set["cpu-period"] || set["cpu-shares"] {
		r.CPU = &specs.LinuxCPU{}
		if set["cpu-quota"] {
			r.CPU.Quota = u.cpuQuota
		}
		if set["cpu-period"] {
			r.CPU.Period = u.cpuPeriod
		}
		if set["cpu-shares"] {
			r.CPU.Shares = u.cpuShares
		}
	}
	if set["pids-limit"] {
		r.Pids = &specs.LinuxPids{Limit: u.pidsLimit}
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("nothing to update: give --memory, --cpu-quota, --cpu-period, --cpu-shares, --pids-limit or -r FILE")
	}
	return &r, nil
}

func runUpdate(ctx context.Context, rt *executor.Runtime, id string, u *updateFlags) error {
	r, err := u.resources()
	if err != nil {
		return err
	}
	return rt.Update(ctx, id, r)
}
