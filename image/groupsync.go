package image

import "sync"

// groupSync is a group commit of syncfs(2) on the store's file system:
// every caller gets a sync that started after it called, but callers that
// arrive while one runs share the next one. The ten layers of a pull,
// unpacked three at a time, each need their files on disk before their
// directory is renamed into place; one syncfs per layer flushed the whole
// file system ten times (each 15-40 ms on this project's VMs).
type groupSync struct {
	mu      sync.Mutex
	cond    *sync.Cond
	running bool
	started uint64 // syncs started
	done    uint64 // syncs finished
	errs    map[uint64]error
}

// sync returns once a syncfs of path's file system that started after
// this call has finished, with its error.
func (g *groupSync) sync(path string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
		g.errs = map[uint64]error{}
	}
	need := g.started + 1 // one running now started before this call
	for g.done < need {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		gen := g.started
		g.mu.Unlock()
		err := syncFS(path)
		g.mu.Lock()
		g.running = false
		g.done = gen
		if err != nil {
			g.errs[gen] = err
		}
		for k := range g.errs {
			if k+16 < gen {
				delete(g.errs, k)
			}
		}
		g.cond.Broadcast()
	}
	// The sync that covered this call is the first one numbered need or
	// later; report an error of any of them.
	for gen := need; gen <= g.done; gen++ {
		if err := g.errs[gen]; err != nil {
			return err
		}
	}
	return nil
}
