// Command reconciled keeps the containers on a host exactly as a directory of
// manifests says. One binary: the daemon (run), its clients (status, plan,
// logs, validate) and the low-level OCI runtime (runtime ...).
package main
