package bearer

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const (
	current = "current-token-0123456789"
	rotated = "rotated-token-0123456789"
)

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tokens  []string
		wantErr string // substring; "" for success
	}{
		{"none", nil, ""},
		{"one", []string{current}, ""},
		{"two for rotation", []string{current, rotated}, ""},
		{"exactly MinLength", []string{strings.Repeat("x", MinLength)}, ""},
		{"one short of MinLength", []string{strings.Repeat("x", MinLength-1)}, "token is shorter than 16 characters"},
		{"short among good ones", []string{current, "xyzzy"}, "token 2 of 2 is shorter than 16 characters"},
		{"space", []string{"good-token 0123456789"}, "token contains white space or NUL"},
		{"tab", []string{current, "good-token\t0123456789"}, "token 2 of 2 contains white space or NUL"},
		{"newline", []string{"good-token-0123456789\nsecond"}, "white space or NUL"},
		{"NUL", []string{"good-token-0123456789\x00"}, "white space or NUL"},
		{"empty", []string{""}, "shorter than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.tokens)
			if tc.wantErr == "" {
				if err != nil || s.Len() != len(tc.tokens) {
					t.Fatalf("New = %v (%d tokens), %v", s, s.Len(), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New: err = %v, want one containing %q", err, tc.wantErr)
			}
			for _, tok := range tc.tokens {
				if tok != "" && strings.Contains(err.Error(), tok) {
					t.Errorf("the error shows a token: %v", err)
				}
			}
			if len(tc.tokens) == 1 && Validate(tc.tokens[0]) == nil {
				t.Errorf("Validate accepts what New refuses")
			}
		})
	}
}

func TestMatch(t *testing.T) {
	s, err := New([]string{current, rotated})
	if err != nil {
		t.Fatal(err)
	}
	dup := NewUnchecked([]string{"short", "second", "short"})
	for _, tc := range []struct {
		name  string
		set   *Set
		tok   string
		want  int
		match bool
	}{
		{"current", s, current, 0, true},
		{"rotated", s, rotated, 1, true},
		{"wrong", s, "wrong-token-0123456789ab", -1, false},
		{"prefix", s, current[:len(current)-1], -1, false},
		{"suffix", s, current + "x", -1, false},
		{"other case", s, strings.ToUpper(current), -1, false},
		{"empty", s, "", -1, false},
		{"unchecked short token", dup, "second", 1, true},
		{"first of duplicates", dup, "short", 0, true},
		{"empty against an empty configured token", NewUnchecked([]string{""}), "", -1, false},
		{"empty set", NewUnchecked(nil), current, -1, false},
		{"nil set", nil, current, -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i, ok := tc.set.Match(tc.tok)
			if i != tc.want || ok != tc.match {
				t.Errorf("Match(%q) = %d, %v; want %d, %v", tc.tok, i, ok, tc.want, tc.match)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	s, err := New([]string{current, rotated})
	if err != nil {
		t.Fatal(err)
	}
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	for _, tc := range []struct {
		name      string
		auth      []string // Authorization header values; nil for none
		want      error    // of Check
		wantBasic error    // of CheckBasic
		index     int      // of the token matched, when want is nil
	}{
		{"no header", nil, ErrNoToken, ErrNoToken, 0},
		{"empty header", []string{""}, ErrNoToken, ErrNoToken, 0},
		{"bearer", []string{"Bearer " + current}, nil, nil, 0},
		{"rotated", []string{"Bearer " + rotated}, nil, nil, 1},
		{"lower-case scheme", []string{"bearer " + current}, nil, nil, 0},
		{"upper-case scheme", []string{"BEARER " + current}, nil, nil, 0},
		{"blanks around the token", []string{"Bearer  \t" + current + " \t"}, nil, nil, 0},
		{"wrong token", []string{"Bearer wrong-token-0123456789"}, ErrBadToken, ErrBadToken, 0},
		{"prefix", []string{"Bearer " + current[:10]}, ErrBadToken, ErrBadToken, 0},
		{"empty bearer", []string{"Bearer "}, ErrNoToken, ErrNoToken, 0},
		{"only blanks", []string{"Bearer  \t "}, ErrNoToken, ErrNoToken, 0},
		{"no space after the scheme", []string{"Bearer" + current}, ErrNoToken, ErrNoToken, 0},
		{"tab after the scheme", []string{"Bearer\t" + current}, ErrNoToken, ErrNoToken, 0},
		{"basic password", []string{basic("git", current)}, ErrNoToken, nil, 0},
		{"basic password rotated", []string{basic("", rotated)}, ErrNoToken, nil, 1},
		{"basic wrong password", []string{basic("git", "wrong-token-0123456789")}, ErrNoToken, ErrBadToken, 0},
		{"token as basic user name", []string{basic(current, "")}, ErrNoToken, ErrNoToken, 0},
		{"basic not base64", []string{"Basic " + current}, ErrNoToken, ErrNoToken, 0},
		{"other scheme", []string{"token " + current}, ErrNoToken, ErrNoToken, 0},
		// The first header counts, as with Header.Get.
		{"two headers", []string{"Bearer " + current, "Bearer wrong"}, nil, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if tc.auth != nil {
				r.Header["Authorization"] = tc.auth
			}
			i, err := s.Check(r)
			if !errors.Is(err, tc.want) || (err == nil && i != tc.index) {
				t.Errorf("Check = %d, %v; want %d, %v", i, err, tc.index, tc.want)
			}
			i, err = s.CheckBasic(r)
			if !errors.Is(err, tc.wantBasic) || (err == nil && i != tc.index) {
				t.Errorf("CheckBasic = %d, %v; want %d, %v", i, err, tc.index, tc.wantBasic)
			}
		})
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, header, want string
		ok                 bool
	}{
		{"plain", "Bearer abc", "abc", true},
		{"mixed case", "bEaReR abc", "abc", true},
		{"inner space kept", "Bearer a b", "a b", true},
		{"trailing tab", "Bearer abc\t", "abc", true},
		{"empty", "", "", false},
		{"scheme only", "Bearer", "", false},
		{"scheme and space", "Bearer ", "", false},
		{"longer scheme", "Bearers abc", "", false},
		{"basic", "Basic abc", "", false},
		{"leading space", " Bearer abc", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Parse(tc.header)
			if got != tc.want || ok != tc.ok {
				t.Errorf("Parse(%q) = %q, %v; want %q, %v", tc.header, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// FuzzParse checks that any Authorization header is parsed without a
// panic, that a token found is non-empty, without blanks around it and
// is what follows the scheme, and that a Set built from a valid token
// accepts exactly the headers that present it.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "Bearer " + current, "Bearer " + current + " ", "bearer " + current, "Bearer",
		"Bearer ", "Basic eDp5", "Bearer \x00", "Basic " + base64.StdEncoding.EncodeToString([]byte("git:"+current)),
		"BEARER \t" + current, "Bearer\t" + current, "Bearer é", "Basic Og=="} {
		f.Add(s)
	}
	set, err := New([]string{current})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, header string) {
		tok, ok := Parse(header)
		if ok != (tok != "") {
			t.Fatalf("Parse(%q) = %q, %v", header, tok, ok)
		}
		if ok {
			if strings.Trim(tok, " \t") != tok || !strings.HasSuffix(strings.TrimRight(header, " \t"), tok) ||
				!strings.EqualFold(header[:7], "bearer ") {
				t.Fatalf("Parse(%q) = %q", header, tok)
			}
		}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["Authorization"] = []string{header}
		_, err := set.Check(r)
		wantOK := len(header) >= 7 && strings.EqualFold(header[:7], "bearer ") && strings.Trim(header[7:], " \t") == current
		if (err == nil) != wantOK {
			t.Fatalf("Check with %q: %v", header, err)
		}
		tok, ok = TokenOrPassword(r)
		if ok != (tok != "") {
			t.Fatalf("TokenOrPassword with %q = %q, %v", header, tok, ok)
		}
		if _, err := set.CheckBasic(r); err == nil && tok != current {
			t.Fatalf("CheckBasic with %q accepted %q", header, tok)
		}
	})
}
