package main

import (
	"flag"
	"io"
	"reflect"
	"testing"
)

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args    []string
		wantPos []string
		wantOut string
	}{
		{[]string{"web", "-o", "json"}, []string{"web"}, "json"},
		{[]string{"-o", "json", "web"}, []string{"web"}, "json"},
		{[]string{"web"}, []string{"web"}, "text"},
		{[]string{"-o", "json", "web", "--", "ls", "-o", "x"}, []string{"web", "ls", "-o", "x"}, "json"},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		out := fs.String("o", "text", "")
		pos, err := parseInterspersed(fs, tt.args)
		if err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if !reflect.DeepEqual(pos, tt.wantPos) || *out != tt.wantOut {
			t.Errorf("%v: got %v -o %s, want %v -o %s", tt.args, pos, *out, tt.wantPos, tt.wantOut)
		}
	}
}
