// Package specwarm builds encoding/json's tables for the runtime spec's
// types on a goroutine of their own while the command line's create and
// run are still starting: they decode the bundle's config.json first
// thing. In a fresh process the first decode of a spec costs about 2 ms
// (1.8-2.3 ms measured on a 2-core VM), nearly all of it building those
// tables, and a later one 0.1 ms.
//
// The work starts from this package's initialization, which comes well
// before main: it imports only encoding/json, os and the spec's types, and
// Go initializes a package as soon as its imports are (in import path
// order among the ready ones), while the binary's heavier packages (the
// image puller's, HTTP, TLS) still wait. The goroutine runs on a second CPU
// while the rest of the start runs on the first.
//
// A container's init does not do it: it runs with GOMAXPROCS=1, where the
// goroutine only gets the CPU when the main one blocks and then holds it
// when the configuration comes (measured: no gain for the command line's
// creates, in-process creates without spares 2-3% slower). A spare init
// warms its decoder while it waits (executor).
package specwarm

import (
	"encoding/json"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// RuncName is the name the binary answers to as a drop-in runc
// (cmd/reconciled: argv[0] "reconciled-runc").
const RuncName = "reconciled-runc"

// JSON is a spec with every part of a spec the daemon's containers use.
const JSON = `{
"ociVersion":"1.0.2","process":{"terminal":false,"user":{"uid":1,"gid":1,"umask":18,"additionalGids":[1]},
"args":["a"],"env":["A=b"],"cwd":"/","capabilities":{"bounding":["CAP_KILL"],"effective":["CAP_KILL"],
"inheritable":["CAP_KILL"],"permitted":["CAP_KILL"],"ambient":["CAP_KILL"]},
"rlimits":[{"type":"RLIMIT_NOFILE","hard":1,"soft":1}],"noNewPrivileges":true,"oomScoreAdj":1},
"root":{"path":"r","readonly":true},"hostname":"h","domainname":"d",
"mounts":[{"destination":"/p","type":"proc","source":"proc","options":["nosuid"]}],
"hooks":{"createContainer":[{"path":"/h","args":["h"],"env":["A=b"],"timeout":1}]},
"annotations":{"a":"b"},
"linux":{"sysctl":{"a":"b"},"resources":{"devices":[{"allow":false,"type":"c","major":1,"minor":1,"access":"rwm"}],
"memory":{"limit":1,"reservation":1,"swap":1},"cpu":{"shares":1,"quota":1,"period":1,"cpus":"0","mems":"0"},
"pids":{"limit":1}},"cgroupsPath":"/a","namespaces":[{"type":"pid"},{"type":"network","path":"/n"}],
"maskedPaths":["/a"],"readonlyPaths":["/b"],"rootfsPropagation":"rslave"}}`

func init() {
	if wanted(os.Args) {
		go Warm()
	}
}

// Warm decodes JSON once, so that encoding/json has the tables of every
// spec type the daemon's containers use.
func Warm() {
	var s specs.Spec
	_ = json.Unmarshal([]byte(JSON), &s)
}

// wanted reports whether the process will decode a spec soon after it
// starts: `reconciled runtime ... create|run ...` and `reconciled-runc ...
// create|run ...`. A container named create or run given to another
// command warms for nothing: 2 ms of CPU on the side.
func wanted(args []string) bool {
	var rest []string
	switch {
	case len(args) > 0 && filepath.Base(args[0]) == RuncName:
		rest = args[1:]
	case len(args) > 1 && args[1] == "runtime":
		rest = args[2:]
	}
	for _, a := range rest {
		if a == "create" || a == "run" {
			return true
		}
	}
	return false
}
