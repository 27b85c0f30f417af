// Package systemd holds the systemd unit that runs the daemon
// (reconciled.service), embedded so that `reconciled install` writes the
// very file that is shipped here.
//
// It must not hold code: the unit's behaviour is tested end to end in
// test/systemd_e2e.
package systemd

import _ "embed"

// Unit is reconciled.service as shipped, with ExecStart naming
// DefaultBinary.
//
//go:embed reconciled.service
var Unit string

// DefaultBinary is the binary ExecStart names in Unit.
const DefaultBinary = "/usr/local/bin/reconciled"
