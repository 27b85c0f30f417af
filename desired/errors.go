package desired

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvalid is matched (errors.Is) by every *Error: the manifest, not the
// system, is at fault, and retrying without a change to the file is useless.
var ErrInvalid = errors.New("invalid manifest")

// Error formats as "file:line: field: message", leaving out what is unknown:
//
//	web.yaml:14: spec.resources.memory: "12XB" is not a quantity (use e.g. 256Mi)
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	if e.Field != "" {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(e.Field)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Is makes errors.Is(err, ErrInvalid) true for every *Error.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// errorList collects the errors of one file.
type errorList struct {
	file string
	errs []*Error
}

// maxErrors bounds the errors reported for one file.
const maxErrors = 100

func (l *errorList) add(line int, field, format string, args ...any) {
	if len(l.errs) == maxErrors {
		l.errs = append(l.errs, &Error{File: l.file, Msg: "too many errors; fix the ones above first"})
	}
	if len(l.errs) > maxErrors {
		return
	}
	l.errs = append(l.errs, &Error{File: l.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// Errors joins errs into one error (nil when empty), for callers that want a
// plain error value.
func Errors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}
