// Package specwarm holds two constants that the command line and the
// executor share: RuncName, the name the binary answers to as a drop-in
// runc, and JSON, a spec with every part of a spec the daemon's containers
// use. A spare container init decodes JSON while it waits, so that
// encoding/json has the spec types' tables ready when its configuration
// comes (executor: warmDecoder).
//
// The command line's create and run need no warming: they read
// config.json with the executor's hand-written decoder (executor:
// decodeSpec), which has no tables to build. The package must not start
// work of its own at initialization: every process of the binary, the
// container's init included, would pay for it.
package specwarm

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
