package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// errNoCRIU: checkpoint and restore need CRIU, which this runtime does not
// drive.
var errNoCRIU = fmt.Errorf("%w: checkpoint and restore need CRIU, which reconciled does not use", errors.ErrUnsupported)

// runcCheckpoint is `checkpoint` and `restore`: runc's flags, so that help
// lists them and a mistake in them is reported as runc reports it (runc's
// checkpoint.bats checks --parent-path before CRIU runs), then refused.
// errUsage means the usage was printed.
func runcCheckpoint(sub string, args []string, stderr io.Writer) error {
	fs := newFlagSet("runtime "+sub, "runtime "+sub+" [--image-path DIR] [--work-path DIR] [--parent-path DIR] ... ID", stderr)
	image := fs.String("image-path", "", "path for the CRIU image files")
	fs.String("work-path", "", "path for CRIU's work files and logs")
	for _, b := range []string{"tcp-established", "ext-unix-sk", "shell-job", "lazy-pages", "file-locks", "auto-dedup"} {
		fs.Bool(b, false, "accepted for runc compatibility (CRIU)")
	}
	fs.Int("status-fd", -1, "accepted for runc compatibility (CRIU)")
	fs.String("page-server", "", "accepted for runc compatibility (CRIU)")
	fs.String("manage-cgroups-mode", "", "accepted for runc compatibility (CRIU)")
	fs.String("empty-ns", "", "accepted for runc compatibility (CRIU)")
	parent := new(string)
	if sub == "checkpoint" {
		parent = fs.String("parent-path", "", "path of the previous CRIU images of a pre-dump, relative to --image-path")
		fs.Bool("leave-running", false, "accepted for runc compatibility (CRIU)")
		fs.Bool("pre-dump", false, "accepted for runc compatibility (CRIU)")
	} else {
		fs.String("bundle", "", "accepted for runc compatibility (CRIU)")
		fs.String("b", "", "accepted for runc compatibility (CRIU)")
		fs.Bool("detach", false, "accepted for runc compatibility (CRIU)")
		fs.Bool("d", false, "accepted for runc compatibility (CRIU)")
		fs.String("pid-file", "", "accepted for runc compatibility (CRIU)")
		fs.String("console-socket", "", "accepted for runc compatibility (CRIU)")
		fs.Bool("no-subreaper", false, "accepted for runc compatibility (CRIU)")
		fs.Bool("no-pivot", false, "accepted for runc compatibility (CRIU)")
		fs.String("lsm-profile", "", "accepted for runc compatibility (CRIU)")
		fs.String("lsm-mount-context", "", "accepted for runc compatibility (CRIU)")
	}
	if _, ok := parseArgs(fs, args, 1, 1); !ok {
		return errUsage
	}
	if *parent != "" {
		// As runc checks it, before anything else.
		if filepath.IsAbs(*parent) {
			return errors.New("--parent-path must be relative")
		}
		real := filepath.Join(*image, *parent)
		fi, err := os.Stat(real)
		if err == nil && !fi.IsDir() {
			err = &os.PathError{Op: "stat", Path: real, Err: errors.New("not a directory")}
		}
		if err != nil {
			return fmt.Errorf("invalid --parent-path: %w", err)
		}
	}
	return errNoCRIU
}
