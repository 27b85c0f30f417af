package image

import (
	"sync"
	"testing"
)

func TestGroupSyncSharesSyncs(t *testing.T) {
	var g groupSync
	dir := t.TempDir()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if err := g.sync(dir); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if g.started == 0 || g.started > 16 {
		t.Errorf("%d syncs for 16 callers", g.started)
	}
	t.Logf("%d syncs for 16 concurrent callers", g.started)
	before := g.started
	if err := g.sync(dir); err != nil || g.started != before+1 {
		t.Errorf("a caller alone gets a sync of its own: %d -> %d, %v", before, g.started, err)
	}
	if err := g.sync(dir + "/missing"); err == nil {
		t.Errorf("a failed sync is reported")
	}
}
