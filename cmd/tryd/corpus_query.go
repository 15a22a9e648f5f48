package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/logsync"
	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/maintner/query"
)

// corpusAPI is what ls and show need: a query client, or the same
// queries over a corpus loaded in this process.
type corpusAPI interface {
	Repos(ctx context.Context) ([]query.RepoSummary, error)
	Issues(ctx context.Context, owner, name string, f query.IssueFilter) (query.Page[query.IssueSummary], error)
	Issue(ctx context.Context, owner, name string, number int32) (*query.Issue, error)
	Projects(ctx context.Context) ([]query.Project, error)
	Changes(ctx context.Context, f query.ChangeFilter) (query.Page[query.ChangeSummary], error)
	Change(ctx context.Context, project string, number int32) (*query.Change, error)
}

type localAPI struct{ c *maintner.Corpus }

func (l localAPI) Repos(context.Context) ([]query.RepoSummary, error) { return query.Repos(l.c), nil }
func (l localAPI) Issues(_ context.Context, owner, name string, f query.IssueFilter) (query.Page[query.IssueSummary], error) {
	return query.Issues(l.c, owner, name, f)
}
func (l localAPI) Issue(_ context.Context, owner, name string, n int32) (*query.Issue, error) {
	return query.GetIssue(l.c, owner, name, n)
}
func (l localAPI) Projects(context.Context) ([]query.Project, error) { return query.Projects(l.c), nil }
func (l localAPI) Changes(_ context.Context, f query.ChangeFilter) (query.Page[query.ChangeSummary], error) {
	return query.Changes(l.c, f)
}
func (l localAPI) Change(_ context.Context, project string, n int32) (*query.Change, error) {
	return query.GetChange(l.c, project, n)
}

// newQueryClient returns a client of the --server flag's maintnerd,
// with the query API token of --token-file or maintnerd.api_token.
func (a *app) newQueryClient(src sourceFlags) (*query.Client, error) {
	cl, err := query.NewClient(*src.server, nil)
	if err != nil {
		return nil, err
	}
	token, err := maintnerdAPIToken(*src.tokenFile, a.cfg)
	if err != nil {
		return nil, err
	}
	return cl.WithToken(token), nil
}

func (a *app) corpusAPI(ctx context.Context, src sourceFlags) (corpusAPI, error) {
	if *src.server != "" {
		return a.newQueryClient(src)
	}
	c, d, err := a.loadLocal(ctx, *src.dir)
	if err != nil {
		return nil, err
	}
	a.log.Debugf("loaded corpus in %s", d)
	return localAPI{c}, nil
}

func corpusLs(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("corpus ls", "[flags] repos | issues OWNER/REPO | projects | changes PROJECT", `Ls lists GitHub repositories, a repository's issues and pull requests,
Gerrit projects, or a project's changes, one per line (or as JSON).`)
	src := addSourceFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	state := fs.String("state", "", "issues: open, closed or all; changes: new, merged, abandoned, open, closed or all")
	var labels, votes multiFlag
	fs.Var(&labels, "label", "issues: require this label (repeatable)")
	pr := fs.String("pr", "", "issues: true for pull requests only, false for plain issues only")
	fs.Var(&votes, "vote", "changes: require a current vote LABEL=VALUE, e.g. Run-TryBot=+1 (repeatable)")
	branch := fs.String("branch", "", "changes: branch")
	hashtag := fs.String("hashtag", "", "changes: hashtag")
	since := fs.String("since", "", "only things updated at or after this RFC 3339 time or duration ago (e.g. 72h)")
	limit := fs.Int("limit", 100, "maximum number of lines")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprintln(a.stderr, "tryd corpus ls: say what to list: repos, issues OWNER/REPO, projects or changes PROJECT")
		return errUsage
	}
	var sinceT time.Time
	if *since != "" {
		if d, err := time.ParseDuration(*since); err == nil {
			sinceT = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, *since); err == nil {
			sinceT = t
		} else {
			fmt.Fprintf(a.stderr, "tryd corpus ls: --since %q: want an RFC 3339 time or a duration\n", *since)
			return errUsage
		}
	}
	api, err := a.corpusAPI(ctx, src)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	switch {
	case rest[0] == "repos" && len(rest) == 1:
		repos, err := api.Repos(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(a.stdout, repos)
		}
		fmt.Fprintln(tw, "REPO\tISSUES\tOPEN\tPRS")
		for _, r := range repos {
			fmt.Fprintf(tw, "%s/%s\t%d\t%d\t%d\n", r.Owner, r.Name, r.Issues, r.OpenIssues, r.PullRequests)
		}
	case rest[0] == "projects" && len(rest) == 1:
		ps, err := api.Projects(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(a.stdout, ps)
		}
		fmt.Fprintln(tw, "PROJECT\tCHANGES\tOPEN")
		for _, p := range ps {
			fmt.Fprintf(tw, "%s\t%d\t%d\n", p.Name, p.Changes, p.OpenChange)
		}
	case rest[0] == "issues" && len(rest) == 2:
		owner, name, ok := strings.Cut(rest[1], "/")
		if !ok {
			fmt.Fprintf(a.stderr, "tryd corpus ls issues: %q is not OWNER/REPO\n", rest[1])
			return errUsage
		}
		f := query.IssueFilter{State: strings.TrimSuffix(*state, "all"), Labels: labels, UpdatedSince: sinceT, Limit: min(*limit, query.MaxLimit)}
		if *pr != "" {
			b, err := strconv.ParseBool(*pr)
			if err != nil {
				fmt.Fprintf(a.stderr, "tryd corpus ls: --pr %q: want true or false\n", *pr)
				return errUsage
			}
			f.PR = &b
		}
		page, err := api.Issues(ctx, owner, name, f)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(a.stdout, page)
		}
		fmt.Fprintln(tw, "NUMBER\tSTATE\tKIND\tCOMMENTS\tLABELS\tTITLE")
		for _, is := range page.Items {
			kind := "issue"
			if is.PullRequest {
				kind = "pr"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\n", is.Number, is.State, kind, is.Comments, strings.Join(is.Labels, ","), clip(is.Title, 70))
		}
	case rest[0] == "changes" && len(rest) == 2:
		f := query.ChangeFilter{Project: rest[1], Status: strings.TrimSuffix(*state, "all"), Branch: *branch, Hashtag: *hashtag, UpdatedSince: sinceT, Limit: min(*limit, query.MaxLimit)}
		for _, v := range votes {
			vf, err := query.ParseVoteFilter(v)
			if err != nil {
				fmt.Fprintf(a.stderr, "tryd corpus ls: --vote: %v\n", err)
				return errUsage
			}
			f.Votes = append(f.Votes, vf)
		}
		page, err := api.Changes(ctx, f)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(a.stdout, page)
		}
		fmt.Fprintln(tw, "NUMBER\tSTATUS\tPS\tBRANCH\tVOTES\tSUBJECT")
		for _, ch := range page.Items {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\n", ch.Number, ch.Status, ch.CurrentPatchSet, ch.Branch, formatVotes(ch.Votes), clip(ch.Subject, 60))
		}
	default:
		fmt.Fprintf(a.stderr, "tryd corpus ls: cannot list %q: say repos, issues OWNER/REPO, projects or changes PROJECT\n", strings.Join(rest, " "))
		return errUsage
	}
	return nil
}

func formatVotes(vs []query.Vote) string {
	var parts []string
	for _, v := range vs {
		s := fmt.Sprintf("%s%+d", v.Label, v.Value)
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}

func clip(s string, n int) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func corpusShow(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("corpus show", "[flags] issue OWNER/REPO N | change PROJECT N", `Show prints one GitHub issue or pull request (with comments, events,
reviews, head and base commits, statuses) or one Gerrit change (patch sets,
messages, votes per patch set).`)
	src := addSourceFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) != 3 || (rest[0] != "issue" && rest[0] != "change") {
		fmt.Fprintln(a.stderr, "tryd corpus show: want: issue OWNER/REPO N, or change PROJECT N")
		return errUsage
	}
	n, err := strconv.ParseInt(rest[2], 10, 32)
	if err != nil || n <= 0 {
		fmt.Fprintf(a.stderr, "tryd corpus show: %q is not a number\n", rest[2])
		return errUsage
	}
	api, err := a.corpusAPI(ctx, src)
	if err != nil {
		return err
	}
	if rest[0] == "issue" {
		owner, name, ok := strings.Cut(rest[1], "/")
		if !ok {
			fmt.Fprintf(a.stderr, "tryd corpus show: %q is not OWNER/REPO\n", rest[1])
			return errUsage
		}
		is, err := api.Issue(ctx, owner, name, int32(n))
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(a.stdout, is)
		}
		printIssue(a.stdout, owner+"/"+name, is)
		return nil
	}
	ch, err := api.Change(ctx, rest[1], int32(n))
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(a.stdout, ch)
	}
	printChange(a.stdout, ch)
	return nil
}

func login(u *query.User) string {
	if u == nil {
		return "?"
	}
	if u.Login == "" {
		return "#" + strconv.FormatInt(u.ID, 10)
	}
	return u.Login
}

func ts(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04")
}

func printIssue(w io.Writer, repo string, is *query.Issue) {
	kind := "issue"
	if is.PullRequest {
		kind = "pull request"
	}
	fmt.Fprintf(w, "%s#%d (%s, %s) %s\nby %s, created %s, updated %s\nlabels: %s\n", repo, is.Number, kind, is.State, is.Title, login(is.User), ts(is.Created), ts(is.Updated), strings.Join(is.Labels, ", "))
	if is.Milestone != "" {
		fmt.Fprintf(w, "milestone: %s\n", is.Milestone)
	}
	if pr := is.PR; pr != nil {
		fmt.Fprintf(w, "head %s (%s:%s), base %s (%s), merged %v, draft %v\n", pr.HeadSHA, pr.HeadRepo, pr.HeadRef, pr.BaseSHA, pr.BaseRef, pr.Merged, pr.Draft)
	}
	for _, s := range is.Statuses {
		fmt.Fprintf(w, "status %s: %s %s\n", s.Context, s.State, s.TargetURL)
	}
	for _, c := range is.CheckRuns {
		fmt.Fprintf(w, "check %s: %s %s\n", c.Name, c.Status, c.Conclusion)
	}
	fmt.Fprintf(w, "\n%s\n", is.Body)
	for _, c := range is.Comment {
		fmt.Fprintf(w, "\n--- comment %d by %s at %s\n%s\n", c.ID, login(c.User), ts(c.Created), c.Body)
	}
	for _, r := range is.Reviews {
		fmt.Fprintf(w, "\n--- review %d by %s at %s: %s\n%s\n", r.ID, login(r.Actor), ts(r.Created), r.State, r.Body)
	}
	if len(is.Events) > 0 {
		fmt.Fprintf(w, "\nevents:\n")
		for _, e := range is.Events {
			fmt.Fprintf(w, "  %s %s %s %s\n", ts(e.Created), login(e.Actor), e.Type, e.Subject)
		}
	}
}

func printChange(w io.Writer, ch *query.Change) {
	fmt.Fprintf(w, "%s change %d (%s) %s\nChange-Id %s, branch %s, owner %d, created %s, updated %s\n", ch.Project, ch.Number, ch.Status, ch.Subject, ch.ChangeID, ch.Branch, ch.Owner, ts(ch.Created), ts(ch.Updated))
	if len(ch.Hashtags) > 0 {
		fmt.Fprintf(w, "hashtags: %s\n", strings.Join(ch.Hashtags, ", "))
	}
	if ch.Error != "" {
		fmt.Fprintf(w, "error reading meta history: %s\n", ch.Error)
	}
	for _, ps := range ch.PatchSets {
		cur := ""
		if ps.Number == ch.CurrentPatchSet {
			cur = " (current)"
		}
		fmt.Fprintf(w, "patch set %d%s: %s by %d at %s\n", ps.Number, cur, ps.Commit, ps.Uploader, ts(ps.Created))
		for _, v := range ch.AllVotes {
			if v.PatchSet == ps.Number && len(v.Votes) > 0 {
				for _, vote := range v.Votes {
					fmt.Fprintf(w, "    %s%+d by %d\n", vote.Label, vote.Value, vote.Account)
				}
			}
		}
	}
	for _, m := range ch.Messages {
		fmt.Fprintf(w, "\n--- PS%d, %d at %s %s\n%s\n", m.PatchSet, m.Author, ts(m.Time), m.Tag, m.Body)
	}
}

func corpusTail(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("corpus tail", "--server URL | --dir DIR", `Tail prints mutations, one JSON object per line: with --server it follows
the server's /logs and prints mutations as they are appended (from the
current end, or from the start with --all); with --dir it prints the last
-n records of a local log and exits.`)
	src := addSourceFlags(fs)
	all := fs.Bool("all", false, "with --server: print the whole log first")
	n := fs.Int("n", 10, "with --dir: how many of the last records to print")
	cache := fs.String("cache", "", "with --server: follower cache directory (default: a temporary directory)")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	print := func(pos mutlog.Position, payload []byte) error {
		m, err := maintner.UnmarshalMutation(payload)
		if err != nil {
			fmt.Fprintf(a.stdout, "{\"pos\":%q,\"error\":%q}\n", pos.String(), err.Error())
			return nil
		}
		base, _ := protojson.Marshal(m.Base)
		ext, _ := protojson.Marshal(m.Ext)
		fmt.Fprintf(a.stdout, "{\"pos\":%q,\"mutation\":%s,\"tryd\":%s}\n", pos.String(), base, ext)
		return nil
	}
	if *src.server == "" {
		dir := *src.dir
		if dir == "" {
			dir = a.logDir()
		}
		var ring []struct {
			pos mutlog.Position
			p   []byte
		}
		err := mutlog.ForEachDir(dir, mutlog.DirOptions{}, func(pos mutlog.Position, payload []byte) error {
			ring = append(ring, struct {
				pos mutlog.Position
				p   []byte
			}{pos, append([]byte(nil), payload...)})
			if len(ring) > max(*n, 0) {
				ring = ring[1:]
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, r := range ring {
			print(r.pos, r.p)
		}
		return nil
	}
	base := strings.TrimSuffix(*src.server, "/")
	cacheDir := *cache
	if cacheDir == "" {
		d, err := os.MkdirTemp("", "tryd-tail")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		cacheDir = d
	}
	fl, err := logsync.NewFollower(logsync.FollowerOptions{URL: base + "/logs", CacheDir: cacheDir, Log: a.log})
	if err != nil {
		return err
	}
	defer fl.Close()
	from := mutlog.Position{}
	if !*all {
		from, err = logEnd(ctx, base+"/logs")
		if err != nil {
			return err
		}
	}
	err = fl.Run(ctx, from, func(pos mutlog.Position, payload []byte) error { return print(pos, payload) })
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// logEnd asks a /logs server for its current end position.
func logEnd(ctx context.Context, url string) (mutlog.Position, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return mutlog.Position{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return mutlog.Position{}, fmt.Errorf("tail: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return mutlog.Position{}, fmt.Errorf("tail: GET %s: %s", url, resp.Status)
	}
	var segs []logsync.SegmentJSON
	if err := jsonDecode(resp.Body, &segs); err != nil {
		return mutlog.Position{}, fmt.Errorf("tail: %s: %w", url, err)
	}
	if len(segs) == 0 {
		return mutlog.Position{}, nil
	}
	last := segs[len(segs)-1]
	return mutlog.Position{Segment: last.Number, Offset: last.Size}, nil
}
