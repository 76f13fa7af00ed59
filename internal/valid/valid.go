// Package valid is the one set of rules for text that enters sagaflow from
// outside (an HTTP body, a header, a message on the bus) and the one error
// type that says what is wrong with it. Every edge validates with it, so what
// the API accepts the bus accepts, PostgreSQL can store, and a market or a
// log line can carry: no NUL or other control characters, valid UTF-8, a
// bounded length, and ids of a fixed charset.
//
// The zero Errors is ready to use; it is not safe for concurrent use.
package valid

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalid is what every *Error is (errors.Is), so callers can tell bad
// input from a failure without knowing the type.
var ErrInvalid = errors.New("invalid")

// Problem is one thing wrong with one field.
type Problem struct {
	// Field names the field the way the client sent it: "name",
	// "price.amount", "attributes[color]", "header Idempotency-Key".
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error lists every problem found in one input. Its text is
// "field: message; field: message".
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Field + ": " + p.Message
	}
	return strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true for every *Error.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// New is an *Error with one problem.
func New(field, format string, args ...any) error {
	return &Error{Problems: []Problem{{Field: field, Message: fmt.Sprintf(format, args...)}}}
}

// Problems returns the problems of err if it is (or wraps) an *Error.
func Problems(err error) ([]Problem, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Problems, true
	}
	return nil, false
}

// Errors collects the problems of one input; Err returns them as one error.
type Errors struct {
	problems []Problem
}

// Add records a problem with field.
func (v *Errors) Add(field, format string, args ...any) {
	v.problems = append(v.problems, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Check records the problem when ok is false, and returns ok.
func (v *Errors) Check(ok bool, field, format string, args ...any) bool {
	if !ok {
		v.Add(field, format, args...)
	}
	return ok
}

// Merge adds the problems of err (an *Error) with their fields prefixed by
// prefix and a dot; any other non-nil error is added whole under prefix.
func (v *Errors) Merge(prefix string, err error) {
	if err == nil {
		return
	}
	ps, ok := Problems(err)
	if !ok {
		v.Add(prefix, "%s", err.Error())
		return
	}
	for _, p := range ps {
		if prefix != "" {
			p.Field = prefix + "." + p.Field
		}
		v.problems = append(v.problems, p)
	}
}

// Empty reports whether no problem was recorded.
func (v *Errors) Empty() bool { return len(v.problems) == 0 }

// Err is nil without problems, else an *Error with all of them.
func (v *Errors) Err() error {
	if len(v.problems) == 0 {
		return nil
	}
	return &Error{Problems: v.problems}
}

// Text checks s as human text of at least min and at most max characters
// (runes; min 1 also refuses text that is only spaces), and reports ok.
// Text is valid UTF-8 without control characters (C0, DEL, C1), bidi
// overrides or noncharacters; with multiline, tabs and newlines are allowed.
func (v *Errors) Text(field, s string, min, max int, multiline bool) bool {
	if msg := TextProblem(s, min, max, multiline); msg != "" {
		v.Add(field, "%s", msg)
		return false
	}
	return true
}

// TextProblem is what Text would record for s, or "".
func TextProblem(s string, min, max int, multiline bool) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	n := utf8.RuneCountInString(s)
	if n > max {
		return fmt.Sprintf("must be at most %d characters, got %d", max, n)
	}
	if min > 0 && strings.TrimSpace(s) == "" {
		return "is required"
	}
	if n < min {
		return fmt.Sprintf("must be at least %d characters, got %d", min, n)
	}
	for i, r := range s {
		if r == '\t' || r == '\n' {
			if multiline {
				continue
			}
			return fmt.Sprintf("must be on one line (control character %U at byte %d)", r, i)
		}
		if badRune(r) {
			return fmt.Sprintf("must not contain %U (byte %d)", r, i)
		}
	}
	return ""
}

// badRune: control characters, bidi embedding/override/isolate controls
// (they reorder what an operator or a market shows), and noncharacters.
func badRune(r rune) bool {
	switch {
	case unicode.Is(unicode.Cc, r):
		return true
	case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069:
		return true
	case r >= 0xFDD0 && r <= 0xFDEF, r&0xFFFE == 0xFFFE:
		return true
	}
	return false
}

// Token checks s as an opaque token of 1..max printable ASCII characters
// without spaces (message ids, idempotency keys, request ids), and reports
// ok.
func (v *Errors) Token(field, s string, max int) bool {
	if msg := TokenProblem(s, max); msg != "" {
		v.Add(field, "%s", msg)
		return false
	}
	return true
}

// TokenProblem is what Token would record for s, or "".
func TokenProblem(s string, max int) string {
	if s == "" {
		return "is required"
	}
	if len(s) > max {
		return fmt.Sprintf("must be at most %d characters, got %d", max, len(s))
	}
	if !IsToken(s) {
		return "must be printable ASCII without spaces (0x21-0x7E)"
	}
	return ""
}

// IsToken reports whether s is non-empty printable ASCII without spaces.
func IsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7E {
			return false
		}
	}
	return true
}

// UUID reports whether s is a UUID in its canonical text form: 36
// characters, lowercase hex in groups of 8-4-4-4-12. Other forms that
// parsers accept (urn:uuid:..., braces, no hyphens, uppercase) are refused,
// so one resource has one id.
func UUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}
