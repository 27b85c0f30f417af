package actual

import "time"

// SetClock replaces the Store's clock (tests).
func SetClock(s *Store, now func() time.Time) { s.now = now }
