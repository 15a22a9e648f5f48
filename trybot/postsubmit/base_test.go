package postsubmit_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/internal/config"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/trybot/postsubmit"
)

func TestClassify(t *testing.T) {
	testenv.NeedTool(t, "git")
	testenv.NeedTool(t, "sh")
	marker := filepath.Join(t.TempDir(), "ran-once")
	bs, p := builders(config.Builder{Name: "linux-amd64", PostSubmit: true, Steps: []config.Step{
		{Name: "ok", Shell: "true"},
		// Fails wherever the file "old-bug" exists: at base too.
		{Name: "pre", Shell: "test ! -e old-bug"},
		// Fails wherever the file "new-bug" exists: only the change.
		{Name: "new", Shell: "test ! -e new-bug"},
		// Fails the first time it runs, then passes.
		{Name: "flaky", Shell: "test ! -e new-bug -o -e " + marker + " || { touch " + marker + "; exit 1; }"},
	}})

	tests := []struct {
		name string
		// postSubmit builds the base as post-submit first, whose result
		// Classify must reuse.
		postSubmit bool
		retries    int
		want       map[string]postsubmit.Classification
		wantBase   int // base builds Classify submits
	}{
		{name: "base build reused", postSubmit: true, retries: 1, want: map[string]postsubmit.Classification{
			"pre": postsubmit.ClassPreExisting, "new": postsubmit.ClassNew, "flaky": postsubmit.ClassFlaky}},
		{name: "base built on demand", retries: 1, wantBase: 1, want: map[string]postsubmit.Classification{
			"pre": postsubmit.ClassPreExisting, "new": postsubmit.ClassNew, "flaky": postsubmit.ClassFlaky}},
		{name: "no retries: a flake looks new", retries: 0, wantBase: 1, want: map[string]postsubmit.Classification{
			"pre": postsubmit.ClassPreExisting, "new": postsubmit.ClassNew, "flaky": postsubmit.ClassNew}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cc := startStack(t)
			repo := newRepo(t)
			ctx := context.Background()
			b := newBuilder(t, cc, repo, t.TempDir(), bs, p)
			base := repo.Commit("base", map[string]string{"old-bug": "x"})
			if tc.postSubmit {
				ids, err := b.Update(ctx, "r", "main", "")
				if err != nil {
					t.Fatal(err)
				}
				waitAll(t, cc, ids)
			}
			// The change, on a branch of its own.
			repo.Git("checkout", "-q", "-b", "change")
			change := repo.Commit("change", map[string]string{"new-bug": "x"})
			repo.Git("checkout", "-q", "main")
			// Each case starts with the flaky step not yet run.
			writeFile(t, marker)
			removeFile(t, marker)

			src := graph.Source{Repo: repo.URL(), Revision: change}
			g, _ := p.Plan("linux-amd64", src)
			resp, err := cc.Submit(ctx, api.SubmitRequest{Graph: *g, Labels: map[string]string{"kind": "try", "builder": "linux-amd64"}})
			if err != nil {
				t.Fatal(err)
			}
			try := waitAll(t, cc, []int64{resp.BuildID})[0]
			var failed []string
			for _, j := range try.Jobs {
				if j.State == api.JobFailed {
					failed = append(failed, j.Name)
				}
			}
			if len(failed) != 3 {
				t.Fatalf("try build failed jobs %v, want pre, new and flaky", failed)
			}
			got, err := b.Classify(ctx, postsubmit.ClassifyRequest{Repo: "r", Builder: "linux-amd64", Source: src, Base: base,
				Failed: failed, Retries: tc.retries, Labels: map[string]string{"trybot_run": "7"}})
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.want {
				if got[name] != want {
					t.Errorf("%s classified %q, want %q", name, got[name], want)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("classified %v, want exactly %v", got, tc.want)
			}
			baseBuilds, err := cc.Builds(ctx, api.ListOptions{Labels: map[string]string{"kind": "base"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(baseBuilds) != tc.wantBase {
				t.Errorf("%d base builds submitted, want %d", len(baseBuilds), tc.wantBase)
			}
			for _, bl := range baseBuilds {
				if bl.Labels["revision"] != base || bl.Labels["trybot_run"] != "7" {
					t.Errorf("base build labels %v", bl.Labels)
				}
			}
		})
	}
}

func TestClassifyRefusesBadInput(t *testing.T) {
	cc, _ := api.NewClient("http://127.0.0.1:1", clientToken, nil)
	bs, p := builders(config.Builder{Name: "b"})
	b, err := postsubmit.New(postsubmit.Options{Coordinator: cc, Planner: p, Dir: t.TempDir(), Builders: bs})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  postsubmit.ClassifyRequest
		want error
	}{
		{"unknown builder", postsubmit.ClassifyRequest{Builder: "x", Base: "0123456789012345678901234567890123456789"}, postsubmit.ErrUnknown},
		{"bad base", postsubmit.ClassifyRequest{Builder: "b", Base: "HEAD~1"}, postsubmit.ErrBadRevision},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := b.Classify(context.Background(), tc.req); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}
