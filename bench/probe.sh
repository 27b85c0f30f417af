#!/usr/bin/env bash
# What spec.health's probes cost the daemon (issue 17): N containers (busybox
# httpd in its own network namespace) probed every interval by one kind of
# probe at a time (none, http, tcp, exec); the daemon's CPU per probe and
# as a share of one core. Run as root from the repository:
#   sudo bench/probe.sh [-n 100] [-interval 10s] [-window 60s] [-kinds none,http,tcp,exec]
# Everything it creates lives under one temporary directory and is removed.
set -euo pipefail
export CGO_ENABLED=0
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/probebench.XXXXXX)
trap 'rm -rf --one-file-system "$work"' EXIT
go build -o "$work/reconciled.link" ./cmd/reconciled
install -m 0755 "$work/reconciled.link" "$work/reconciled"
go build -o "$work/probebench" ./bench/probebench
"$work/probebench" -reconciled "$work/reconciled" -work "$work" "$@"
