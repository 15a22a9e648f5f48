package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/testcluster"
	"github.com/tryd-ci/tryd/maintner"
)

// golang.org/x/build/maintner is a real client of maintnerd's log, but the
// main module must not depend on it: compat/xbuild, a nested module, holds
// xfollow, a program that follows a /logs URL with x/build's own client
// and writes what x/build's Corpus holds as JSON. These tests build it
// with "go -C compat/xbuild build" (a subprocess, no module dependency)
// and read its snapshots. The types below mirror its Snapshot.

type xSnapshot struct {
	Syncs      int        `json:"syncs"`
	SyncErrors int        `json:"sync_errors"`
	LastError  string     `json:"last_error"`
	NetRetries int        `json:"net_retries"`
	Check      string     `json:"check"`
	Gerrit     []xProject `json:"gerrit"`
	GitHub     []xRepo    `json:"github"`
	Tail       *struct {
		Mutations    int     `json:"mutations"`
		Errors       int     `json:"errors"`
		Restarts     int     `json:"restarts"`
		GerritCLs    []int32 `json:"gerrit_cls"`
		GitHubIssues []int32 `json:"github_issues"`
	} `json:"tail"`
}

type xProject struct {
	Server  string `json:"server"`
	Project string `json:"project"`
	CLs     []xCL  `json:"cls"`
}

// xCL is a change as x/build sees it; the e2e builds the same from tryd's
// corpus to compare.
type xCL struct {
	Number   int32                      `json:"number"`
	Status   string                     `json:"status"`
	Branch   string                     `json:"branch"`
	Version  int32                      `json:"version"`
	Commit   string                     `json:"commit"`
	ChangeID string                     `json:"change_id"`
	Subject  string                     `json:"subject"`
	Votes    map[string]map[string]int8 `json:"votes"`
	Messages []xMessage                 `json:"messages"`
}

type xMessage struct {
	Version int32  `json:"version"`
	Author  string `json:"author"`
	Message string `json:"message"`
}

type xRepo struct {
	Owner  string   `json:"owner"`
	Repo   string   `json:"repo"`
	Labels []string `json:"labels"`
	Issues []xIssue `json:"issues"`
}

type xIssue struct {
	Number      int32      `json:"number"`
	Title       string     `json:"title"`
	User        string     `json:"user"`
	PullRequest bool       `json:"pull_request"`
	Closed      bool       `json:"closed"`
	Labels      []string   `json:"labels"`
	Comments    []xComment `json:"comments"`
}

type xComment struct {
	User string `json:"user"`
	Body string `json:"body"`
}

// buildXfollow builds compat/xbuild's xfollow into dir with the go
// command goTool (the caller gets it from testenv.NeedTool, so that under
// CI=true a missing Go toolchain fails the test). It runs in its own
// goroutine, beside the start of the stack, so it takes no *testing.T.
func buildXfollow(goTool, repoRoot, dir string) (string, error) {
	out := filepath.Join(dir, "xfollow")
	cmd := exec.Command(goTool, "-C", filepath.Join(repoRoot, "compat", "xbuild"), "build", "-o", out, "./cmd/xfollow")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go -C compat/xbuild build ./cmd/xfollow: %v\n%s", err, b)
	}
	return out, nil
}

// xfollower is a running xfollow process.
type xfollower struct {
	p   *proc
	out string // its snapshot file
}

// startXfollow runs xfollow -tail against logsURL until the test ends.
func startXfollow(t *testing.T, s *stack, bin, logsURL string) *xfollower {
	t.Helper()
	dir := t.TempDir()
	x := &xfollower{out: filepath.Join(dir, "snapshot.json")}
	if err := os.Mkdir(filepath.Join(dir, "cache"), 0o755); err != nil {
		t.Fatal(err)
	}
	x.p = runProc(t, testcluster.ProcOptions{Binary: bin, Name: "xfollow", Log: s.logs,
		Args: []string{"-logs", logsURL, "-out", x.out, "-cache", filepath.Join(dir, "cache"), "-tail", "-retry", "500ms", "-v"}})
	return x
}

// snapshot reads xfollow's latest snapshot (nil before the first).
func (x *xfollower) snapshot(t *testing.T) *xSnapshot {
	t.Helper()
	b, err := os.ReadFile(x.out)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	must(t, err)
	var s xSnapshot
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("xfollow snapshot: %v\n%s", err, b)
	}
	return &s
}

// exited reports whether the xfollow process has ended (it does only on
// x/build's ErrSplit or a bad command line).
func (x *xfollower) exited() bool { return x.p.exited() }

// trydView is what tryd's corpus c holds, in xfollow's terms: the changes
// of Gerrit project proj (named "host:port/project" in tryd's corpus) as
// x/build would show them, and GitHub repository owner/repo. Votes are
// keyed like x/build's ("<account>@<serverID>"). The caller holds no lock.
func trydView(c *maintner.Corpus, proj, serverID, owner, repo string) ([]xCL, *xRepo) {
	c.RLock()
	defer c.RUnlock()
	var cls []xCL
	if p := c.GerritProject(proj); p != nil {
		for _, ch := range p.Changes() {
			v := xCL{Number: ch.Number, Status: ch.Status, Branch: ch.Branch, Version: ch.CurrentPatchSet,
				ChangeID: ch.ChangeID, Subject: ch.Subject, Votes: map[string]map[string]int8{}}
			for _, ps := range ch.PatchSets {
				if ps.Number == ch.CurrentPatchSet {
					v.Commit = ps.Commit.String()
				}
			}
			for _, vote := range ch.VotesOn(ch.CurrentPatchSet) {
				if v.Votes[vote.Label] == nil {
					v.Votes[vote.Label] = map[string]int8{}
				}
				v.Votes[vote.Label][fmt.Sprintf("%d@%s", vote.Account, serverID)] = vote.Value
			}
			for _, m := range ch.Messages {
				v.Messages = append(v.Messages, xMessage{Version: m.PatchSet, Author: fmt.Sprintf("%d@%s", m.Author, serverID), Message: m.Body})
			}
			cls = append(cls, v)
		}
	}
	sort.Slice(cls, func(i, j int) bool { return cls[i].Number < cls[j].Number })
	r := c.GitHubRepo(owner, repo)
	if r == nil {
		return cls, nil
	}
	out := &xRepo{Owner: owner, Repo: repo, Labels: []string{}}
	for _, l := range r.Labels() {
		out.Labels = append(out.Labels, l.Name)
	}
	sort.Strings(out.Labels)
	for _, is := range r.Issues() {
		if is.NotExist {
			continue
		}
		v := xIssue{Number: is.Number, Title: is.Title, PullRequest: is.PullRequest, Closed: is.Closed, Labels: []string{}, Comments: []xComment{}}
		if is.User != nil {
			v.User = is.User.Login
		}
		for _, l := range is.Labels {
			v.Labels = append(v.Labels, l.Name)
		}
		sort.Strings(v.Labels)
		for _, cm := range is.Comments {
			body, _ := c.Text(cm.Body)
			com := xComment{Body: body}
			if cm.User != nil {
				com.User = cm.User.Login
			}
			v.Comments = append(v.Comments, com)
		}
		out.Issues = append(out.Issues, v)
	}
	sort.Slice(out.Issues, func(i, j int) bool { return out.Issues[i].Number < out.Issues[j].Number })
	return cls, out
}

// compareXbuild returns how x/build's snapshot differs from tryd's view
// ("" when it agrees). Known difference: current Gerrit (and gerritsim)
// write votes as "Label: Run-TryBot=+1, <uuid> ..."; x/build's
// parseGerritLabelValue predates the UUID and reads the value "+1," as
// 0, so x/build has every vote tryd has (same labels, same voters) with
// the value 0 (compat/xbuild's TestXbuildSyncsTrydLog states the same).
// And x/build has no message for a patch set upload without votes (see
// below).
func compareXbuild(xs *xSnapshot, server, project string, tcls []xCL, trepo *xRepo) string {
	var diffs []string
	var xp *xProject
	for i := range xs.Gerrit {
		if xs.Gerrit[i].Server == server && xs.Gerrit[i].Project == project {
			xp = &xs.Gerrit[i]
		}
	}
	if xp == nil {
		return fmt.Sprintf("x/build has no Gerrit project %s/%s (it has %d)", server, project, len(xs.Gerrit))
	}
	if len(xp.CLs) != len(tcls) {
		diffs = append(diffs, fmt.Sprintf("x/build has %d changes, tryd %d", len(xp.CLs), len(tcls)))
	}
	for i := 0; i < len(tcls) && i < len(xp.CLs); i++ {
		t, x := tcls[i], xp.CLs[i]
		tv, xv := t.Votes, x.Votes
		tm, xm := t.Messages, x.Messages
		t.Votes, x.Votes, t.Messages, x.Messages = nil, nil, nil, nil
		if !reflect.DeepEqual(t, x) {
			diffs = append(diffs, fmt.Sprintf("change: x/build %+v, tryd %+v", x, t))
			continue
		}
		for label, byVoter := range tv {
			for voter, value := range byVoter {
				xvalue, ok := xv[label][voter]
				if !ok || xvalue != 0 || value == 0 {
					diffs = append(diffs, fmt.Sprintf("change %d: vote %s by %s: tryd %+d, x/build %d (present %v); want x/build's known 0", t.Number, label, voter, value, xvalue, ok))
				}
			}
		}
		for label, byVoter := range xv {
			for voter := range byVoter {
				if _, ok := tv[label][voter]; !ok {
					diffs = append(diffs, fmt.Sprintf("change %d: x/build has a vote %s by %s that tryd has not", t.Number, label, voter))
				}
			}
		}
		// x/build skips a meta commit whose message begins "Uploaded
		// patch set N." (no colon: an upload without votes), which tryd keeps
		// as a change message, as Gerrit's REST API lists it.
		tm = slices.DeleteFunc(tm, func(m xMessage) bool { return uploadMessage.MatchString(m.Message) })
		if !reflect.DeepEqual(tm, xm) {
			diffs = append(diffs, fmt.Sprintf("change %d messages:\n x/build %q\n tryd    %q", t.Number, xm, tm))
		}
	}
	var xr *xRepo
	for i := range xs.GitHub {
		if trepo != nil && xs.GitHub[i].Owner == trepo.Owner && xs.GitHub[i].Repo == trepo.Repo {
			xr = &xs.GitHub[i]
		}
	}
	switch {
	case trepo == nil:
		diffs = append(diffs, "tryd has no GitHub repository")
	case xr == nil:
		diffs = append(diffs, fmt.Sprintf("x/build has no GitHub repository %s/%s", trepo.Owner, trepo.Repo))
	case !reflect.DeepEqual(xr, trepo):
		diffs = append(diffs, fmt.Sprintf("GitHub %s/%s: x/build %+v, tryd %+v", trepo.Owner, trepo.Repo, *xr, *trepo))
	}
	return strings.Join(diffs, "\n")
}

// uploadMessage is the change message of a patch set upload without
// votes: "Uploaded patch set N.", maybe followed by other lines (e.g.
// "Outdated Votes:").
var uploadMessage = regexp.MustCompile(`^Uploaded patch set [0-9]+\.(\n|$)`)

// checkXbuild waits until xfollow's x/build corpus agrees with tryd's
// follower c on the whole history, and that the tail delivered every
// change in tailed (created after xfollow started, and after maintnerd's
// kill -9 and restart).
func checkXbuild(t *testing.T, s *stack, x *xfollower, c *maintner.Corpus, tailed []int) {
	t.Helper()
	server := strings.TrimSuffix(strings.TrimPrefix(s.w.Sim.URL(), "http://"), "/")
	var xs *xSnapshot
	diff := "no snapshot yet"
	deadline := time.Now().Add(45 * time.Second)
	for {
		if x.exited() {
			t.Fatalf("xfollow exited; last snapshot %+v", x.snapshot(t))
		}
		xs = x.snapshot(t)
		if xs != nil {
			tcls, trepo := trydView(c, server+"/"+s.w.Project, s.w.Sim.ServerID(), "org", "repo")
			if len(tcls) < len(s.changes) {
				t.Fatalf("tryd's follower has %d changes, the test created %d", len(tcls), len(s.changes))
			}
			if diff = compareXbuild(xs, server, s.w.Project, tcls, trepo); diff == "" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("x/build's corpus (xfollow) does not agree with tryd's follower:\n%s", diff)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if xs.Check != "" {
		t.Errorf("x/build Corpus.Check: %s", xs.Check)
	}
	if xs.Syncs < 2 {
		t.Errorf("xfollow synced %d times; it should have followed the log as it grew", xs.Syncs)
	}
	if xs.Tail == nil {
		t.Fatal("xfollow reported no tail")
	}
	for _, n := range tailed {
		if !slices.Contains(xs.Tail.GerritCLs, int32(n)) {
			t.Errorf("TailNetworkMutationSource did not deliver change %d (tailed %v)", n, xs.Tail.GerritCLs)
		}
	}
	// It followed across maintnerd's kill -9, not just around it: some
	// fetch failed while maintnerd was down, and was retried.
	if xs.NetRetries+xs.SyncErrors+xs.Tail.Errors+xs.Tail.Restarts == 0 {
		t.Errorf("x/build's client saw no failed fetch: did it follow across maintnerd's kill -9? %+v", xs)
	}
	t.Logf("x/build agrees: %d syncs (%d failed and retried, last %q; %d fetches retried inside x/build); tail: %d mutations, %d errors, %d restarts",
		xs.Syncs, xs.SyncErrors, xs.LastError, xs.NetRetries, xs.Tail.Mutations, xs.Tail.Errors, xs.Tail.Restarts)
}
