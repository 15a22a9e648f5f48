package githubsim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzREST sends arbitrary methods, paths, query strings, headers and
// bodies to the REST API and the git paths: the simulator must never
// panic, must answer with a status GitHub uses, and every JSON body must
// parse.
func FuzzREST(f *testing.F) {
	seeds := []struct{ method, path, auth, body, inm string }{
		{"GET", "/api/v3/repos/octo/hello/issues?state=all&sort=updated&direction=asc&per_page=1&page=2", "token", "", ""},
		{"POST", "/api/v3/repos/octo/hello/issues/1/comments", "token", `{"body":"hi"}`, ""},
		{"POST", "/api/v3/repos/octo/hello/issues/1/comments", "token", `{"body":`, ""},
		{"POST", "/api/v3/repos/octo/hello/issues/1/labels", "token", `["a","b"]`, ""},
		{"POST", "/api/v3/repos/octo/hello/issues/1/labels", "token", `{"labels":[1]}`, ""},
		{"DELETE", "/api/v3/repos/octo/hello/issues/1/labels/a%20b", "token", "", ""},
		{"POST", "/api/v3/repos/octo/hello/check-runs", "app", `{"name":"x","head_sha":"main","status":"completed","conclusion":"success"}`, ""},
		{"PATCH", "/api/v3/repos/octo/hello/check-runs/1", "app", `{"conclusion":"nope"}`, ""},
		{"POST", "/api/v3/repos/octo/hello/statuses/main", "token", `{"state":"success","description":"` + strings.Repeat("x", 200) + `"}`, ""},
		{"GET", "/api/v3/repos/octo/hello/commits/main/check-runs?filter=all&status=queued", "token", "", ""},
		{"GET", "/api/v3/repos/octo/hello/commits/HEAD~1/status", "", "", ""},
		{"GET", "/api/v3/repos/octo/hello/hooks/1/deliveries?cursor=-1&per_page=1000", "owner", "", ""},
		{"GET", "/api/v3/repos/octo/hello", "Basic !!!", "", `W/"x", *`},
		{"GET", "/octo/hello.git/info/refs?service=git-upload-pack", "", "", ""},
		{"GET", "/api/v3/app", "Bearer eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMDA5In0.AAAA", "", ""},
		{"POST", "/api/v3/app/installations/1/access_tokens", "Bearer a.b.c", `{"repositories":`, ""},
		{"GET", "/octo/hello.git/../../../etc/passwd", "", "", ""},
		{"GET", "/api/v3/installation/repositories?per_page=1000&page=-3", "app", "", ""},
		{"GET", "/api/v3/installation/repositories", "token", "", ""},
		{"GET", "/api/v3/app/installations?per_page=x&page=99999999999999999999", "Bearer a.b.c", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.auth, s.body, s.inm)
	}
	w := newWorld(f, Options{})
	h := w.s.Handler()
	codes := map[int]bool{200: true, 201: true, 202: true, 204: true, 304: true, 400: true, 401: true, 403: true, 404: true, 413: true, 422: true, 429: true}
	f.Fuzz(func(t *testing.T, method, path, auth, body, inm string) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\x00") {
			return // not a request line a client can send
		}
		req, err := http.NewRequest(method, "http://sim"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		switch auth {
		case "token":
			req.Header.Set("Authorization", "token "+w.writeTok)
		case "app":
			req.Header.Set("Authorization", "Bearer "+w.appTok)
		case "owner":
			req.Header.Set("Authorization", "Bearer "+w.ownerTok)
		case "":
		default:
			req.Header.Set("Authorization", auth)
		}
		if inm != "" {
			req.Header.Set("If-None-Match", inm)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if strings.HasPrefix(path, "/api/v3/") {
			if !codes[rec.Code] {
				t.Fatalf("%s %s: status %d", method, path, rec.Code)
			}
			if rec.Code != 304 && rec.Body.Len() > 0 && !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("%s %s: %d with a body that is not JSON: %q", method, path, rec.Code, rec.Body.String())
			}
		}
	})
}

// FuzzCheckPath: every path the commit writer accepts is clean, relative
// and cannot reach outside the tree or into .git.
func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"a", "a/b.go", "../x", "a/../b", "/abs", ".git/config", "a/.GIT/x", "a//b", "a/./b", "", "a\\b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if checkPath(p) != nil {
			return
		}
		if strings.HasPrefix(p, "/") || strings.Contains("/"+p+"/", "/../") || strings.Contains(strings.ToLower("/"+p+"/"), "/.git/") || strings.Contains(p, "//") {
			t.Fatalf("accepted unsafe path %q", p)
		}
	})
}
