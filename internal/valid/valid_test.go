package valid

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestText(t *testing.T) {
	cases := []struct {
		name      string
		in        string
		multiline bool
		wantOK    bool
	}{
		{"plain", "Go meetup", false, true},
		{"korean", "블랙 프라이데이", false, true},
		{"emoji", "cup ☕", false, true},
		{"nul", "a\x00b", false, false},
		{"bell", "a\ab", false, false},
		{"del", "a\x7fb", false, false},
		{"c1", "a\u0085b", false, false},
		{"newline_single_line", "a\nb", false, false},
		{"newline_multiline", "a\nb\tc", true, true},
		{"cr_multiline", "a\rb", true, false},
		{"invalid_utf8", "a\xffb", false, false},
		{"bidi_override", "abc\u202Edef", false, false},
		{"noncharacter", "a\uFFFEb", false, false},
		{"only_spaces", "   ", false, false},
		{"empty", "", false, false},
		{"too_long", strings.Repeat("가", 11), false, false},
		{"at_limit", strings.Repeat("가", 10), false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var v Errors
			ok := v.Text("name", c.in, 1, 10, c.multiline)
			if ok != c.wantOK {
				t.Fatalf("Text(%q) = %v, want %v (%v)", c.in, ok, c.wantOK, v.Err())
			}
			if err := v.Err(); (err == nil) != c.wantOK {
				t.Fatalf("Err() = %v", err)
			}
			if !c.wantOK && !strings.HasPrefix(v.Err().Error(), "name: ") {
				t.Fatalf("error does not name the field: %v", v.Err())
			}
		})
	}
}

func TestText_optional_may_be_empty(t *testing.T) {
	var v Errors
	if !v.Text("note", "", 0, 10, false) {
		t.Fatal(v.Err())
	}
}

func TestToken(t *testing.T) {
	for in, want := range map[string]bool{
		"order-1001": true, "a:b/c=d": true, "": false, "my trace": false,
		"a\x00": false, "é": false, strings.Repeat("x", 129): false, strings.Repeat("x", 128): true,
	} {
		var v Errors
		if got := v.Token("id", in, 128); got != want {
			t.Errorf("Token(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestUUID_only_the_canonical_form(t *testing.T) {
	for in, want := range map[string]bool{
		"177f30f0-1c2d-4e5f-8a9b-0c1d2e3f4a5b":          true,
		"177F30F0-1C2D-4E5F-8A9B-0C1D2E3F4A5B":          false,
		"urn:uuid:177f30f0-1c2d-4e5f-8a9b-0c1d2e3f4a5b": false,
		"{177f30f0-1c2d-4e5f-8a9b-0c1d2e3f4a5b}":        false,
		"177f30f01c2d4e5f8a9b0c1d2e3f4a5b":              false,
		"177f30f0-1c2d-4e5f-8a9b-0c1d2e3f4a5":           false,
		"177f30f0_1c2d-4e5f-8a9b-0c1d2e3f4a5b":          false,
		"":                                              false,
	} {
		if got := UUID(in); got != want {
			t.Errorf("UUID(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestErrors_merge_prefixes_fields_and_is_ErrInvalid(t *testing.T) {
	var inner Errors
	inner.Add("name", "is required")
	var v Errors
	v.Merge("payload", inner.Err())
	v.Merge("other", errors.New("plain"))
	v.Merge("none", nil)
	err := fmt.Errorf("decode: %w", v.Err())
	if !errors.Is(err, ErrInvalid) {
		t.Fatal("not ErrInvalid")
	}
	ps, ok := Problems(err)
	if !ok || len(ps) != 2 || ps[0].Field != "payload.name" || ps[1].Field != "other" {
		t.Fatalf("problems = %+v", ps)
	}
	if got, want := v.Err().Error(), "payload.name: is required; other: plain"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func FuzzTextProblem(f *testing.F) {
	for _, s := range []string{"", "a", "a\x00", "\xff", "가나다", "\u202e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if TextProblem(s, 0, 1000, true) != "" {
			return
		}
		// Accepted text is valid UTF-8 without NUL: PostgreSQL can store it.
		if strings.ContainsRune(s, 0) || s != strings.ToValidUTF8(s, "") {
			t.Fatalf("accepted %q", s)
		}
	})
}
