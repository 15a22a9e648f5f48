package query_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tryd-ci/tryd/maintner/query"
)

func TestRequireToken(t *testing.T) {
	const current, rotated = "current-token-0123456789", "rotated-token-0123456789"
	h, err := query.RequireToken(query.NewHandler(sampleCorpus(t, false), nil), []string{current, rotated})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	anon, err := query.NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name, token string
		wantErr     error
	}{
		{"no token", "", query.ErrUnauthorized},
		{"wrong token", "wrong-token-0123456789ab", query.ErrUnauthorized},
		{"prefix of the token", current[:len(current)-1], query.ErrUnauthorized},
		{"token with a suffix", current + "x", query.ErrUnauthorized},
		{"current token", current, nil},
		{"rotated token", rotated, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := anon.WithToken(tc.token).Stats(ctx)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Stats = %+v, %v; want %v", s, err, tc.wantErr)
			}
			if err == nil && s.Records == 0 {
				t.Errorf("Stats with a good token: no records: %+v", s)
			}
			if err != nil && strings.Contains(err.Error(), current) {
				t.Errorf("the error shows the token: %v", err)
			}
		})
	}

	// The scheme is case-insensitive (RFC 7235), as everywhere in tryd
	// (internal/bearer).
	t.Run("raw/lower-case scheme", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/stats", nil)
		req.Header.Set("Authorization", "bearer "+current)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status %d, want 200", resp.StatusCode)
		}
	})

	// The raw answer: 401, JSON body, WWW-Authenticate; other schemes
	// (basic auth with the token as password) are refused too.
	for _, tc := range []struct{ name, header string }{
		{"none", ""},
		{"basic", "Basic Z2Vycml0OmN1cnJlbnQtdG9rZW4tMDEyMzQ1Njc4OQ=="},
		{"no space", "Bearer" + current},
	} {
		t.Run("raw/"+tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/stats", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var eb query.ErrorBody
			if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil || eb.Error == "" {
				t.Errorf("body: %+v, %v", eb, err)
			}
			if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
				t.Errorf("status %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestRequireTokenOptions(t *testing.T) {
	h := query.NewHandler(sampleCorpus(t, false), nil)
	for _, tc := range []struct {
		name   string
		h      http.Handler
		tokens []string
	}{
		{"no tokens", h, nil},
		{"short token", h, []string{"tiny-tok"}},
		{"one short among good ones", h, []string{"good-token-0123456789", "xyzzy"}},
		{"white space", h, []string{"good-token 0123456789"}},
		{"nil handler", nil, []string{"good-token-0123456789"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := query.RequireToken(tc.h, tc.tokens); err == nil {
				t.Error("accepted")
			} else if len(tc.tokens) > 0 && strings.Contains(err.Error(), tc.tokens[len(tc.tokens)-1]) {
				t.Errorf("the error shows a token: %v", err)
			}
		})
	}
}

// FuzzRequireToken checks that any Authorization header is answered
// without a panic, and let through exactly when it is "Bearer TOKEN"
// (the scheme in any case, blanks around TOKEN ignored).
func FuzzRequireToken(f *testing.F) {
	const token = "fuzz-token-0123456789"
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	h, err := query.RequireToken(ok, []string{token})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"", "Bearer " + token, "Bearer " + token + " ", "bearer " + token, "Bearer", "Basic eDp5", "Bearer \x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, auth string) {
		r := httptest.NewRequest(http.MethodGet, "/api/stats", nil)
		r.Header["Authorization"] = []string{auth}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		want := http.StatusUnauthorized
		if len(auth) >= 7 && strings.EqualFold(auth[:7], "Bearer ") && strings.Trim(auth[7:], " \t") == token {
			want = http.StatusNoContent
		}
		if w.Code != want {
			t.Fatalf("Authorization %q: %d, want %d", auth, w.Code, want)
		}
	})
}
