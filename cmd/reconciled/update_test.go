package main

import "testing"

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"-1": -1, "1048576": 1 << 20, "512k": 512 << 10, "64m": 64 << 20, "64M": 64 << 20,
		"1.5g": 3 << 29, "2GiB": 2 << 30, "1gb": 1 << 30, "1t": 1 << 40,
	} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "lots", "-2", "1x", "m"} {
		if got, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) = %d, want an error", in, got)
		}
	}
}
