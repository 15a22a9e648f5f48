package coordinator

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzAPIBodies sends arbitrary bodies to the endpoints that parse JSON
// from clients and workers: the answer must be a clear 4xx (or success),
// never a 5xx or a panic.
func FuzzAPIBodies(f *testing.F) {
	e := newEnv(f, sqliteBackend, envOpts{})
	h := e.c.Handler()
	rec := httptest.NewRecorder()
	reg := httptest.NewRequest("POST", "/api/worker/register", strings.NewReader(`{"slots": 2}`))
	reg.Header.Set("Authorization", "Bearer "+tokenW1)
	h.ServeHTTP(rec, reg)
	f.Add(0, `{"graph": {"jobs": [{"name": "a", "source_mode": "none", "commands": [{"argv": ["x"]}]}]}, "priority": "periodic", "labels": {"k": "v"}}`)
	f.Add(1, `{"worker_id": "nope", "free_slots": 3, "results": [{"attempt_id": "0123456789abcdef", "state": "succeeded", "output_digest": "zz"}]}`)
	f.Add(2, `{"slots": 9999, "labels": {"a,b": "c"}}`)
	f.Add(3, `{"attempt_id": "x", "state": "bogus"}`)
	f.Add(4, `{"digests": ["../x"]}`)
	f.Add(1, `{"worker_id": "nope", "free_slots": 1, "prefetch": -3, "started": [{"attempt_id": "x", "ago_ms": -5}]}`)
	f.Add(1, `{"worker_id": "nope", "free_slots": 0, "prefetch": 4, "started": [{"attempt_id": "0123456789abcdef", "ago_ms": 99999999999}]}`)
	f.Fuzz(func(t *testing.T, which int, body string) {
		paths := []struct{ path, token string }{
			{"/api/graphs", clientToken},
			{"/api/worker/poll", tokenW1},
			{"/api/worker/register", tokenW2},
			{"/api/worker/attempts/0123456789abcdef/result", tokenW1},
			{"/api/artifacts/missing", clientToken},
		}
		p := paths[(which%len(paths)+len(paths))%len(paths)]
		req := httptest.NewRequest("POST", p.path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+p.token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q: %d %s", p.path, body, rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK && rec.Code != http.StatusCreated && !strings.Contains(rec.Body.String(), `"code"`) {
			t.Fatalf("%s: error without a code: %s", p.path, rec.Body)
		}
	})
}
