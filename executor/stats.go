package executor

import (
	"context"
	"fmt"

	"reconciled.dev/reconciled/executor/cgroups"
)

// Stats reads container id's usage and limits from its cgroup (either
// cgroup version, through the driver's Manager.Stats).
func (r *Runtime) Stats(ctx context.Context, id string) (*cgroups.Stats, error) {
	st, err := ReadState(r.root, id)
	if err != nil {
		return nil, err
	}
	if st.Status == StatusCreating {
		return nil, &StateTransitionError{ID: id, Op: "read stats of", From: st.Status}
	}
	m, err := r.cgroupOf(st)
	if err != nil {
		return nil, fmt.Errorf("stats of container %s: %w", id, err)
	}
	if m == nil {
		return nil, fmt.Errorf("stats of container %s: it has no cgroup", id)
	}
	s, err := m.Stats(ctx)
	if err != nil {
		return nil, fmt.Errorf("stats of container %s: %w", id, err)
	}
	return s, nil
}
