package gerritsim_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tryd-ci/tryd/internal/gerritsim"
	"github.com/tryd-ci/tryd/internal/gerritsim/gerritsimtest"
)

// FuzzREST sends arbitrary requests (path, query, body) to the REST
// handler: it must never panic, must answer with one of Gerrit's status
// codes, and JSON answers must carry the XSSI prefix.
func FuzzREST(f *testing.F) {
	seeds := []struct{ method, path, query, body string }{
		{"GET", "/changes/", "q=status:open+label:Run-TryBot=1&o=DETAILED_LABELS&o=CURRENT_REVISION", ""},
		{"GET", "/changes/", "q=status:open&q=-is:open+project:proj&n=1&S=1", ""},
		{"GET", "/changes/proj~1/detail", "", ""},
		{"GET", "/changes/proj~main~I0123456789012345678901234567890123456789", "", ""},
		{"POST", "/a/changes/1/revisions/current/review", "", `{"labels":{"Code-Review":1},"message":"m","tag":"t"}`},
		{"POST", "/a/changes/1/revisions/1/review", "", `{"labels":{"Code-Review":"+2"}}`},
		{"POST", "/a/changes/1/abandon", "", `{"message":"x"}`},
		{"POST", "/a/changes/1/submit", "", `{`},
		{"GET", "/changes/1/messages", "", ""},
		{"GET", "/projects/proj", "", ""},
		{"GET", "/a/accounts/self", "", ""},
		{"GET", "/changes/%zz", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.query, s.body)
	}
	w := gerritsimtest.NewWorld(f, gerritsim.Options{})
	ctx := context.Background()
	if _, _, err := w.Sim.CreateChange(ctx, w.Project, "main", w.Owner, "fuzz target", map[string]string{"f": "x"}); err != nil {
		f.Fatal(err)
	}
	h := w.Sim.Handler()
	ok := map[int]bool{200: true, 400: true, 401: true, 403: true, 404: true, 405: true, 409: true}
	f.Fuzz(func(t *testing.T, method, path, query, body string) {
		if method != "GET" && method != "POST" {
			method = "GET"
		}
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \t\r\n?#") || strings.Contains(path, "info/refs") ||
			strings.Contains(path, "upload-pack") || strings.Contains(path, "receive-pack") || strings.Contains(path, "/objects/") || strings.HasSuffix(path, "/HEAD") {
			return // git paths run git http-backend: not this fuzz test's target
		}
		req := httptest.NewRequest(method, "http://gerrit.invalid/", strings.NewReader(body))
		req.URL.Path = path
		req.URL.RawPath = ""
		req.URL.RawQuery = query
		req.SetBasicAuth("reviewer", gerritsimtest.ReviewerPassword)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !ok[rec.Code] {
			t.Fatalf("%s %s?%s: status %d: %s", method, path, query, rec.Code, rec.Body)
		}
		if rec.Code == 200 && !strings.HasPrefix(rec.Body.String(), ")]}'\n") {
			t.Fatalf("JSON answer without prefix: %q", rec.Body)
		}
	})
}

// TestConcurrentUse runs votes, uploads, queries and fetches at once; with
// -race it checks the simulator's locking.
func TestConcurrentUse(t *testing.T) {
	w := gerritsimtest.NewWorld(t, gerritsim.Options{})
	s := w.Sim
	rcv := newCapture(t)
	s.AddWebhook(rcv.srv.URL)
	ctx := context.Background()
	var nums []int
	for i := 0; i < 4; i++ {
		n, _, err := s.CreateChange(ctx, w.Project, "main", w.Owner, "change "+strconv.Itoa(i), map[string]string{"f" + strconv.Itoa(i): "x"})
		must(t, err)
		nums = append(nums, n)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for _, n := range nums {
		wg.Add(3)
		go func() {
			defer wg.Done()
			for v := 0; v < 3; v++ {
				if err := s.Vote(ctx, n, 0, w.Reviewer, map[string]int{"Code-Review": v - 1}, "", ""); err != nil {
					errs <- err
				}
			}
		}()
		go func() {
			defer wg.Done()
			if _, _, err := s.UploadPatchSet(ctx, n, w.Owner, map[string]string{"g": strconv.Itoa(n)}, ""); err != nil {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			resp, err := http.Get(s.URL() + "changes/?q=status:open&o=DETAILED_LABELS&o=ALL_REVISIONS&o=MESSAGES")
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	must(t, s.Flush(ctx))
}

func TestSubmitMergesMovedBranch(t *testing.T) {
	w := gerritsimtest.NewWorld(t, gerritsim.Options{})
	s := w.Sim
	ctx := context.Background()
	a, _, err := s.CreateChange(ctx, w.Project, "main", w.Owner, "a", map[string]string{"a.txt": "a\n"})
	must(t, err)
	b, shaB, err := s.CreateChange(ctx, w.Project, "main", w.Owner, "b", map[string]string{"b.txt": "b\n"})
	must(t, err)
	c, _, err := s.CreateChange(ctx, w.Project, "main", w.Owner, "c", map[string]string{"a.txt": "conflict\n"})
	must(t, err)
	must(t, s.Submit(ctx, a, w.Reviewer))
	must(t, s.Submit(ctx, b, w.Reviewer))
	dir, err := s.RepoDir(w.Project)
	must(t, err)
	tip := git(t, dir, "rev-parse", "refs/heads/main")
	if tip == shaB {
		t.Fatal("b was fast-forwarded although main had moved")
	}
	if parents := strings.Fields(git(t, dir, "log", "-1", "--format=%P", tip)); len(parents) != 2 || parents[1] != shaB {
		t.Fatalf("merge parents = %v", parents)
	}
	if got := git(t, dir, "ls-tree", "--name-only", tip); got != "a.txt\nb.txt" {
		t.Fatalf("merged tree = %q", got)
	}
	err = s.Submit(ctx, c, w.Reviewer)
	if err == nil || !strings.Contains(err.Error(), "path conflict") {
		t.Fatalf("conflicting submit: %v", err)
	}
	if got := git(t, dir, "rev-parse", "refs/heads/main"); got != tip {
		t.Fatal("failed submit moved the branch")
	}
	code, _, body := rawDo(t, "GET", s.URL()+"changes/"+strconv.Itoa(c), "", "", "")
	if code != 200 || !strings.Contains(body, `"status":"NEW"`) {
		t.Fatalf("change after failed submit: %d %s", code, body)
	}
}
