package postsubmit_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/dashboard"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/trybot/postsubmit"
)

func newBuilder(t *testing.T, cc *api.Client, repo *testenv.GitRepo, dir string, bs []config.Builder, p postsubmit.Planner) *postsubmit.Builder {
	t.Helper()
	b, err := postsubmit.New(postsubmit.Options{Coordinator: cc, Planner: p, Dir: dir, Builders: bs,
		Repos: []postsubmit.Repo{{Name: "r", URL: repo.URL(), Branches: []string{"main"}}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBranchPushFillsGrid(t *testing.T) {
	testenv.NeedTool(t, "git")
	testenv.NeedTool(t, "sh")
	cc := startStack(t)
	repo := newRepo(t)
	bs, p := builders(
		config.Builder{Name: "linux-amd64", PostSubmit: true, Steps: []config.Step{{Name: "check", Shell: "test ! -e broken"}}},
		config.Builder{Name: "linux-386", PostSubmit: true, Steps: []config.Step{{Name: "check", Shell: "true"}}},
		config.Builder{Name: "try-only", Steps: []config.Step{{Name: "x", Shell: "true"}}},
	)
	ctx := context.Background()
	stateDir := t.TempDir()
	b := newBuilder(t, cc, repo, stateDir, bs, p)

	first := repo.Commit("first", map[string]string{"a": "1"})
	ids, err := b.Update(ctx, "r", "main", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 {
		t.Fatalf("first update: %d builds, want 2 (the head, two post-submit builders)", len(ids))
	}
	waitAll(t, cc, ids)
	// A push of three commits, the middle one broken.
	c2 := repo.Commit("second", map[string]string{"broken": "x"})
	c3 := repo.Commit("third", map[string]string{"broken": ""})
	c4 := repo.Commit("fourth", map[string]string{"a": "4"})
	ids, err = b.Update(ctx, "r", "main", c4)
	if err != nil {
		t.Fatal(err)
	}
	builds := waitAll(t, cc, ids)
	var order []string
	for _, bl := range builds {
		if bl.Priority != api.PriorityPostSubmit || bl.Labels["kind"] != "post-submit" || bl.Labels["branch"] != "main" ||
			bl.Labels["commit_author"] != "Ann Author <ann@example.com>" || bl.Labels["commit_time"] == "" {
			t.Errorf("build %d: priority %s, labels %v", bl.ID, bl.Priority, bl.Labels)
		}
		if len(order) == 0 || order[len(order)-1] != bl.Labels["revision"] {
			order = append(order, bl.Labels["revision"])
		}
	}
	if want := []string{c2, c3, c4}; len(order) != 3 || order[0] != want[0] || order[1] != want[1] || order[2] != want[2] {
		t.Errorf("built revisions %v in this order, want oldest first %v", order, want)
	}
	// Nothing new: nothing built; a restarted Builder (state from the
	// coordinator) agrees.
	if ids, err := b.Update(ctx, "r", "main", ""); err != nil || len(ids) != 0 {
		t.Errorf("update without news: %v builds, %v", ids, err)
	}
	b2 := newBuilder(t, cc, repo, t.TempDir(), bs, p)
	if ids, err := b2.Update(ctx, "r", "main", ""); err != nil || len(ids) != 0 {
		t.Errorf("update after restart: %v builds, %v", ids, err)
	}

	grid, err := (&dashboard.CoordinatorGrid{Client: cc}).Grid(ctx, dashboard.GridQuery{Repo: "r", Branch: "main", Page: 1, PerPage: 10})
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, pl := range grid.Platforms {
		cols = append(cols, pl.Builders...)
	}
	want := map[string]map[string]string{
		first: {"linux-amd64": dashboard.CellOK, "linux-386": dashboard.CellOK},
		c2:    {"linux-amd64": dashboard.CellFail, "linux-386": dashboard.CellOK},
		c3:    {"linux-amd64": dashboard.CellOK, "linux-386": dashboard.CellOK},
		c4:    {"linux-amd64": dashboard.CellOK, "linux-386": dashboard.CellOK},
	}
	if len(grid.Commits) != 4 || len(cols) != 2 {
		t.Fatalf("grid has %d commits and columns %v, want 4 commits × 2 builders", len(grid.Commits), cols)
	}
	for _, row := range grid.Commits {
		for i, col := range cols {
			if got := row.Cells[i].State; got != want[row.Revision][col] {
				t.Errorf("cell %s × %s = %s, want %s", row.Revision[:8], col, got, want[row.Revision][col])
			}
		}
		if row.Author != "Ann Author <ann@example.com>" || row.Subject == "" || row.Time == nil {
			t.Errorf("row %s: author %q subject %q time %v", row.Revision[:8], row.Author, row.Subject, row.Time)
		}
	}
}

func TestForceRerunsCell(t *testing.T) {
	testenv.NeedTool(t, "git")
	testenv.NeedTool(t, "sh")
	cc := startStack(t)
	repo := newRepo(t)
	marker := filepath.Join(t.TempDir(), "fixed")
	bs, p := builders(
		config.Builder{Name: "linux-amd64", PostSubmit: true, Steps: []config.Step{{Name: "infra", Shell: "test -e " + marker}}},
	)
	ctx := context.Background()
	b := newBuilder(t, cc, repo, t.TempDir(), bs, p)
	rev := repo.Commit("first", map[string]string{"a": "1"})
	ids, err := b.Update(ctx, "r", "main", "")
	if err != nil || len(ids) != 1 {
		t.Fatalf("update: %v, %v", ids, err)
	}
	if got := waitAll(t, cc, ids)[0].State; got != api.BuildFailed {
		t.Fatalf("first build %s, want failed", got)
	}
	// The infrastructure is fixed; a force build reruns that one cell.
	writeFile(t, marker)
	id, err := b.Force(ctx, postsubmit.ForceRequest{Repo: "r", Revision: rev, Builder: "linux-amd64"})
	if err != nil {
		t.Fatal(err)
	}
	forced := waitAll(t, cc, []int64{id})[0]
	if forced.State != api.BuildSucceeded || forced.Labels["forced"] != "1" || forced.Labels["branch"] != "main" || forced.Labels["revision"] != rev {
		t.Fatalf("forced build %s with labels %v", forced.State, forced.Labels)
	}
	grid, err := (&dashboard.CoordinatorGrid{Client: cc}).Grid(ctx, dashboard.GridQuery{Repo: "r", Branch: "main", Page: 1, PerPage: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(grid.Commits) != 1 || grid.Commits[0].Cells[0].State != dashboard.CellOK || grid.Commits[0].Cells[0].BuildID != id {
		t.Errorf("grid after force: %+v", grid.Commits)
	}
	// A force build does not move the branch's last built commit.
	if ids, err := b.Update(ctx, "r", "main", ""); err != nil || len(ids) != 0 {
		t.Errorf("update after force: %v, %v", ids, err)
	}

	// The same through the HTTP API.
	srv := httptest.NewServer(b.Handler("admin-token-123"))
	defer srv.Close()
	httpCases := []struct {
		name, token, body string
		want              int
	}{
		{"no token", "", `{"repo":"r","revision":"` + rev + `","builder":"linux-amd64"}`, http.StatusUnauthorized},
		{"wrong token", "nope", `{"repo":"r","revision":"` + rev + `","builder":"linux-amd64"}`, http.StatusUnauthorized},
		{"unknown builder", "admin-token-123", `{"repo":"r","revision":"` + rev + `","builder":"x"}`, http.StatusBadRequest},
		{"malformed", "admin-token-123", `{"repo":`, http.StatusBadRequest},
		{"good", "admin-token-123", `{"repo":"r","revision":"` + rev + `","builder":"linux-amd64"}`, http.StatusOK},
	}
	for _, tc := range httpCases {
		t.Run("http "+tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", srv.URL+"/api/force", strings.NewReader(tc.body))
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out struct {
				BuildID int64 `json:"build_id"`
			}
			json.NewDecoder(resp.Body).Decode(&out)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusOK {
				if bl := waitAll(t, cc, []int64{out.BuildID})[0]; bl.Labels["forced"] != "1" || bl.State != api.BuildSucceeded {
					t.Errorf("forced build %d: %s %v", out.BuildID, bl.State, bl.Labels)
				}
			}
		})
	}

	bad := []struct {
		name string
		req  postsubmit.ForceRequest
		want error
	}{
		{"unknown repo", postsubmit.ForceRequest{Repo: "x", Revision: rev, Builder: "linux-amd64"}, postsubmit.ErrUnknown},
		{"unknown builder", postsubmit.ForceRequest{Repo: "r", Revision: rev, Builder: "nope"}, postsubmit.ErrUnknown},
		{"short revision", postsubmit.ForceRequest{Repo: "r", Revision: rev[:8], Builder: "linux-amd64"}, postsubmit.ErrBadRevision},
		{"option-like revision", postsubmit.ForceRequest{Repo: "r", Revision: "--upload-pack=x", Builder: "linux-amd64"}, postsubmit.ErrBadRevision},
		{"missing commit", postsubmit.ForceRequest{Repo: "r", Revision: "0123456789012345678901234567890123456789", Builder: "linux-amd64"}, postsubmit.ErrBadRevision},
		{"unwatched branch", postsubmit.ForceRequest{Repo: "r", Revision: rev, Builder: "linux-amd64", Branch: "dev"}, postsubmit.ErrUnknown},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := b.Force(ctx, tc.req); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestPeriodic(t *testing.T) {
	testenv.NeedTool(t, "git")
	testenv.NeedTool(t, "sh")
	cc := startStack(t)
	repo := newRepo(t)
	bs, p := builders(
		config.Builder{Name: "nightly", Periodic: "*/5 * * * *", Steps: []config.Step{{Name: "x", Shell: "true"}}},
		config.Builder{Name: "plain", PostSubmit: true, Steps: []config.Step{{Name: "x", Shell: "true"}}},
	)
	b := newBuilder(t, cc, repo, t.TempDir(), bs, p)
	head := repo.Commit("first", nil)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 10, 0, 30, 0, time.UTC)
	tests := []struct {
		name       string
		after, now time.Time
		want       int
	}{
		{"not yet", t0, t0.Add(4 * time.Minute), 0},
		{"due", t0, t0.Add(4*time.Minute + 30*time.Second), 1},
		{"due long ago, once", t0, t0.Add(3 * time.Hour), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ids, err := b.Periodic(ctx, tc.after, tc.now)
			if err != nil || len(ids) != tc.want {
				t.Fatalf("periodic: %v, %v; want %d builds", ids, err, tc.want)
			}
			for _, bl := range waitAll(t, cc, ids) {
				if bl.Priority != api.PriorityPeriodic || bl.Labels["builder"] != "nightly" || bl.Labels["revision"] != head || bl.Labels["kind"] != "periodic" {
					t.Errorf("periodic build: priority %s labels %v", bl.Priority, bl.Labels)
				}
			}
		})
	}
	if _, err := postsubmit.New(postsubmit.Options{Coordinator: cc, Planner: p, Dir: t.TempDir(),
		Builders: []config.Builder{{Name: "bad", Periodic: "every tuesday"}}}); err == nil {
		t.Error("a bad cron schedule was accepted")
	}
}

func TestUpdateRefusesBadInput(t *testing.T) {
	cc, _ := api.NewClient("http://127.0.0.1:1", clientToken, nil)
	bs, p := builders(config.Builder{Name: "b", PostSubmit: true})
	b, err := postsubmit.New(postsubmit.Options{Coordinator: cc, Planner: p, Dir: t.TempDir(), Builders: bs,
		Repos: []postsubmit.Repo{{Name: "r", URL: "file:///nonexistent"}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, repo, branch, head string
		want                     error
	}{
		{"unknown repo", "x", "main", "", postsubmit.ErrUnknown},
		{"unwatched branch", "r", "dev", "", postsubmit.ErrUnknown},
		{"short head", "r", "main", "abc", postsubmit.ErrBadRevision},
		{"option head", "r", "main", "--exec=x", postsubmit.ErrBadRevision},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := b.Update(context.Background(), tc.repo, tc.branch, tc.head); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := postsubmit.New(postsubmit.Options{Coordinator: cc, Planner: p, Dir: t.TempDir(),
		Repos: []postsubmit.Repo{{Name: "r", URL: "file:///x", Branches: []string{"-evil"}}}}); err == nil {
		t.Error("an option-like branch name was accepted")
	}
}

func TestRunBuildsOnNudge(t *testing.T) {
	testenv.NeedTool(t, "git")
	testenv.NeedTool(t, "sh")
	cc := startStack(t)
	repo := newRepo(t)
	bs, p := builders(config.Builder{Name: "linux-amd64", PostSubmit: true, Steps: []config.Step{{Name: "x", Shell: "true"}}})
	repo.Commit("first", nil)
	b, err := postsubmit.New(postsubmit.Options{Coordinator: cc, Planner: p, Dir: t.TempDir(), Builders: bs, PollInterval: -1,
		Repos: []postsubmit.Repo{{Name: "r", URL: repo.URL(), Branches: []string{"main"}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitBuilds := func(n int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			bl, err := cc.Builds(ctx, api.ListOptions{Labels: map[string]string{"repo": "r"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(bl) == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d builds, want %d", len(bl), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitBuilds(1) // Run looks at every branch when it starts
	repo.Commit("second", nil)
	repo.Commit("third", nil)
	b.Nudge()
	waitBuilds(3)
}
