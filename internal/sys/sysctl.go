package sys

import (
	"fmt"
	"strings"
)

// The namespaces a sysctl can belong to (the runtime-spec's names).
const (
	NamespaceIPC     = "ipc"
	NamespaceNetwork = "network"
	NamespaceUTS     = "uts"
)

// ipcSysctls are the kernel.* sysctls that the IPC namespace holds
// (ipc/ipc_sysctl.c), as runc's validator lists them.
var ipcSysctls = map[string]bool{
	"kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true, "kernel.sem": true,
	"kernel.shmall": true, "kernel.shmmax": true, "kernel.shmmni": true, "kernel.shm_rmid_forced": true,
}

// SysctlNamespace names the namespace whose copy of sysctl key a container
// changes: a container may set it only when that namespace is its own, or
// else it changes the host's value. An error says that key is in no
// namespace a container can own (it is the host's, always), or that it
// must be set another way.
func SysctlNamespace(key string) (string, error) {
	switch {
	case key == "" || strings.ContainsAny(key, "/\x00") || strings.Contains(key, ".."):
		return "", fmt.Errorf("sysctl %q: not a sysctl name (write it with dots, e.g. net.ipv4.ip_forward)", key)
	case ipcSysctls[key] || strings.HasPrefix(key, "fs.mqueue."):
		return NamespaceIPC, nil
	case strings.HasPrefix(key, "net."):
		return NamespaceNetwork, nil
	case key == "kernel.domainname":
		return NamespaceUTS, nil
	case key == "kernel.hostname":
		return "", fmt.Errorf("sysctl %q: set the hostname with the hostname field, not a sysctl", key)
	}
	return "", fmt.Errorf("sysctl %q is not in a namespace of the container's own: setting it would change the host", key)
}
