package dashboard

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
)

func newAdminServer(t *testing.T, token string) (*Server, error) {
	t.Helper()
	coord, err := api.NewClient("http://127.0.0.1:1", "client-token-0123456789", nil)
	if err != nil {
		t.Fatal(err)
	}
	return New(Options{Coordinator: coord, AdminToken: token})
}

// TestAdminTokenLength checks that a guessable admin token is refused:
// /login takes guesses without limit.
func TestAdminTokenLength(t *testing.T) {
	for _, tc := range []struct {
		name, token string
		ok          bool
	}{
		{"none", "", true},
		{"short", "admin", false},
		{"15 characters", strings.Repeat("x", 15), false},
		{"16 characters", strings.Repeat("x", 16), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newAdminServer(t, tc.token)
			if (err == nil) != tc.ok {
				t.Errorf("New with a %d-character token: err = %v", len(tc.token), err)
			}
		})
	}
}

// TestSessionCookieSecure checks that the session cookie is Secure
// whenever the browser came over HTTPS, including through a proxy that
// terminates TLS.
func TestSessionCookieSecure(t *testing.T) {
	const token = "admin-token-0123456789abcdef"
	s, err := newAdminServer(t, token)
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	for _, tc := range []struct {
		name   string
		header string
		want   bool
	}{
		{"plain HTTP", "", false},
		{"behind a TLS proxy", "https", true},
		{"proxy says http", "http", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/login", "/logout"} {
				req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(url.Values{"token": {token}}.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if tc.header != "" {
					req.Header.Set("X-Forwarded-Proto", tc.header)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				cookies := rec.Result().Cookies()
				if rec.Code != http.StatusSeeOther || len(cookies) != 1 {
					t.Fatalf("POST %s: %d with cookies %v", path, rec.Code, cookies)
				}
				if cookies[0].Secure != tc.want {
					t.Errorf("POST %s: cookie Secure = %v, want %v", path, cookies[0].Secure, tc.want)
				}
			}
		})
	}
}

// TestSlowLoginBodyTimesOut checks that a client that declares a login
// form and stops sending it loses its connection after BodyTimeout.
func TestSlowLoginBodyTimesOut(t *testing.T) {
	coord, err := api.NewClient("http://127.0.0.1:1", "client-token-0123456789", nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Coordinator: coord, AdminToken: "admin-token-0123456789abcdef", BodyTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ntoken=")
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("stalled form answered %d", resp.StatusCode)
		}
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection still open 10s after a 200ms body timeout")
	}
	t.Logf("answered or closed after %v (err %v)", time.Since(start).Round(time.Millisecond), err)
}
