package main

import "testing"

func TestRateFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"2000000", 2_000_000, true},
		{"2M", 2_000_000, true},
		{"2M/s", 2_000_000, true},
		{"1.5M", 1_500_000, true},
		{"512k", 512_000, true},
		{"512Ki", 512 << 10, true},
		{"1Mi", 1 << 20, true},
		{"1G", 1_000_000_000, true},
		{"1Gi", 1 << 30, true},
		{"1m", 0, false}, // milli: not a whole number of bytes
		{"-1", 0, false},
		{"1MB", 0, false},
		{"", 0, false},
		{"9Ei", 0, false},
	} {
		var v int64
		err := rateFlag{&v}.Set(tc.in)
		if (err == nil) != tc.ok || v != tc.want {
			t.Errorf("Set(%q): %d, %v; want %d, ok %v", tc.in, v, err, tc.want, tc.ok)
		}
	}
}
