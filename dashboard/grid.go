package dashboard

import (
	"context"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
)

// GridSource supplies the post-submit grid: for a repository and branch,
// a page of commits (newest first), each with the newest build of each
// builder. CoordinatorGrid reads it from the coordinator's builds.
type GridSource interface {
	Grid(ctx context.Context, q GridQuery) (*Grid, error)
}

// GridQuery selects one page of a grid.
type GridQuery struct {
	Repo string
	// Branch filters by branch; empty means every branch.
	Branch string
	// Page counts from 1; PerPage commits per page.
	Page, PerPage int
}

// Cell states.
const (
	CellOK        = "ok"
	CellFail      = "fail"
	CellRunning   = "running"
	CellCancelled = "cancelled"
	CellNone      = "none" // not built
)

// Grid is one page of commits × builders.
type Grid struct {
	Repo    string `json:"repo"`
	Branch  string `json:"branch,omitempty"`
	Page    int    `json:"page"`
	PerPage int    `json:"per_page"`
	// More says whether an older page exists.
	More bool `json:"more"`
	// Platforms group the builder columns, in column order.
	Platforms []Platform `json:"platforms"`
	Commits   []Commit   `json:"commits"`
}

// Platform is a group of builder columns (e.g. "linux-amd64").
type Platform struct {
	Name     string   `json:"name"`
	Builders []string `json:"builders"`
}

// Commit is one grid row; Cells follow the builder columns.
type Commit struct {
	Revision string     `json:"revision"`
	Branch   string     `json:"branch,omitempty"`
	Author   string     `json:"author,omitempty"`
	Subject  string     `json:"subject,omitempty"`
	Time     *time.Time `json:"time,omitempty"`
	Cells    []Cell     `json:"cells"`
}

// Cell is one builder's result at one commit.
type Cell struct {
	State   string `json:"state"`
	BuildID int64  `json:"build_id,omitempty"`
	// FirstFailure marks a failure whose next older built commit passed
	// on the same builder: where it broke.
	FirstFailure bool `json:"first_failure,omitempty"`
}

// Build labels CoordinatorGrid reads. Post-submit builds carry repo,
// branch, revision and builder; optionally platform (the column group;
// default: the builder name up to its second dash) and the commit's
// commit_author, commit_subject and commit_time (RFC 3339), shown in the
// row. Builds labelled kind=try are not post-submit and are left out.
const (
	LabelRepo     = "repo"
	LabelBranch   = "branch"
	LabelRevision = "revision"
	LabelBuilder  = "builder"
	LabelPlatform = "platform"
	LabelAuthor   = "commit_author"
	LabelSubject  = "commit_subject"
	LabelTime     = "commit_time"
	LabelKind     = "kind"
)

// platformOf returns a builder's column group.
func platformOf(b api.Build) string {
	if p := b.Labels[LabelPlatform]; p != "" {
		return p
	}
	name := b.Labels[LabelBuilder]
	parts := strings.SplitN(name, "-", 3)
	if len(parts) >= 2 {
		return parts[0] + "-" + parts[1]
	}
	return name
}

// makeGrid arranges builds (newest first) into a page of the grid.
func makeGrid(q GridQuery, builds []api.Build) *Grid {
	type row struct {
		Commit
		firstID int64
		cells   map[string]api.Build
	}
	rows := map[string]*row{}
	platformOfBuilder := map[string]string{}
	for _, b := range builds {
		rev := b.Labels[LabelRevision]
		rw := rows[rev]
		if rw == nil {
			rw = &row{Commit: Commit{Revision: rev}, cells: map[string]api.Build{}}
			rows[rev] = rw
		}
		// Builds arrive newest first: the first seen per builder is
		// the newest; commit details come from any build carrying them.
		if _, ok := rw.cells[b.Labels[LabelBuilder]]; !ok {
			rw.cells[b.Labels[LabelBuilder]] = b
		}
		if rw.firstID == 0 || b.ID < rw.firstID {
			rw.firstID = b.ID
		}
		if rw.Author == "" {
			rw.Author = b.Labels[LabelAuthor]
		}
		if rw.Subject == "" {
			rw.Subject = b.Labels[LabelSubject]
		}
		if rw.Branch == "" {
			rw.Branch = b.Labels[LabelBranch]
		}
		if rw.Time == nil {
			if t, err := time.Parse(time.RFC3339, b.Labels[LabelTime]); err == nil {
				rw.Time = &t
			}
		}
		if _, ok := platformOfBuilder[b.Labels[LabelBuilder]]; !ok {
			platformOfBuilder[b.Labels[LabelBuilder]] = platformOf(b)
		}
	}
	all := make([]*row, 0, len(rows))
	for _, rw := range rows {
		all = append(all, rw)
	}
	// Newest commit first: by commit time when both rows know it, else
	// by the first build of the commit (post-submit builds are submitted
	// in commit order).
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.Time != nil && b.Time != nil && !a.Time.Equal(*b.Time) {
			return a.Time.After(*b.Time)
		}
		return a.firstID > b.firstID
	})
	// Columns: builders grouped by platform, both sorted by name.
	byPlatform := map[string][]string{}
	for bl, p := range platformOfBuilder {
		byPlatform[p] = append(byPlatform[p], bl)
	}
	g := &Grid{Repo: q.Repo, Branch: q.Branch, Page: q.Page, PerPage: q.PerPage, Platforms: []Platform{}, Commits: []Commit{}}
	var columns []string
	for p, bls := range byPlatform {
		sort.Strings(bls)
		g.Platforms = append(g.Platforms, Platform{Name: p, Builders: bls})
	}
	sort.Slice(g.Platforms, func(i, j int) bool { return g.Platforms[i].Name < g.Platforms[j].Name })
	for _, p := range g.Platforms {
		columns = append(columns, p.Builders...)
	}
	// Cells for every row read (first failures need the rows below the
	// page), then the page is cut out.
	for _, rw := range all {
		rw.Cells = make([]Cell, len(columns))
		for i, bl := range columns {
			b, ok := rw.cells[bl]
			if !ok {
				rw.Cells[i] = Cell{State: CellNone}
				continue
			}
			rw.Cells[i] = Cell{State: cellState(b.State), BuildID: b.ID}
		}
	}
	for i := range columns {
		// Walking down (older), remember the last failure seen above a
		// run of not-built rows.
		for r, rw := range all {
			if rw.Cells[i].State != CellFail {
				continue
			}
			for _, older := range all[r+1:] {
				switch older.Cells[i].State {
				case CellNone, CellRunning, CellCancelled:
					continue
				case CellOK:
					rw.Cells[i].FirstFailure = true
				}
				break
			}
		}
	}
	start := (q.Page - 1) * q.PerPage
	end := min(start+q.PerPage, len(all))
	if start < len(all) {
		for _, rw := range all[start:end] {
			g.Commits = append(g.Commits, rw.Commit)
		}
	}
	g.More = len(all) > end
	return g
}

func cellState(s api.BuildState) string {
	switch s {
	case api.BuildSucceeded:
		return CellOK
	case api.BuildFailed:
		return CellFail
	case api.BuildCancelled:
		return CellCancelled
	}
	return CellRunning
}

// Grid page limits.
const (
	defaultPerPage = 30
	maxPerPage     = 200
)

// gridView is the grid page.
type gridView struct {
	*Grid
	Rows     []gridRow `json:"-"`
	Columns  int       `json:"-"`
	PrevPage string    `json:"-"`
	NextPage string    `json:"-"`
}

// gridRow is a commit with its cells rendered.
type gridRow struct {
	Commit
	CellsHTML template.HTML
}

// cellsHTML renders a row's cells directly rather than through the
// template, which spends most of a large grid's time escaping thousands
// of cells. It is safe without escaping because everything it writes is
// the dashboard's own: states from a fixed set and integer build IDs.
func cellsHTML(cells []Cell) template.HTML {
	var b strings.Builder
	b.Grow(len(cells) * 64)
	for _, c := range cells {
		if c.BuildID == 0 {
			b.WriteString(`<td class="c none"></td>`)
			continue
		}
		var text, title string
		switch c.State {
		case CellOK:
			text, title = "ok", "ok"
		case CellFail:
			text, title = "fail", "fail"
			if c.FirstFailure {
				text, title = "FAIL", "fail: first failure"
			}
		case CellRunning:
			text, title = "…", "running"
		case CellCancelled:
			text, title = "–", "cancelled"
		default:
			// Not a state this package makes: show nothing of it.
		}
		b.WriteString(`<td class="c `)
		if text != "" {
			b.WriteString(c.State)
		}
		if c.FirstFailure {
			b.WriteString(` first`)
		}
		b.WriteString(`"><a href="/builds/`)
		b.WriteString(strconv.FormatInt(c.BuildID, 10))
		b.WriteString(`" title="`)
		b.WriteString(title)
		b.WriteString(`">`)
		b.WriteString(text)
		b.WriteString(`</a></td>`)
	}
	return template.HTML(b.String())
}

func (s *Server) serveGrid(w http.ResponseWriter, r *http.Request) error {
	q := GridQuery{Repo: r.PathValue("repo"), Branch: r.URL.Query().Get("branch"), Page: 1, PerPage: defaultPerPage}
	if q.Repo == "" || len(q.Repo) > 300 || len(q.Branch) > 300 {
		return badRequest("bad repository or branch")
	}
	if p := r.URL.Query().Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 10000 {
			return badRequest("bad page %q", truncate(p, 20))
		}
		q.Page = n
	}
	if p := r.URL.Query().Get("n"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > maxPerPage {
			return badRequest("bad n %q (1 to %d commits per page)", truncate(p, 20), maxPerPage)
		}
		q.PerPage = n
	}
	g, err := s.grid.Grid(r.Context(), q)
	if err != nil {
		return err
	}
	v := gridView{Grid: g}
	for _, c := range g.Commits {
		v.Rows = append(v.Rows, gridRow{Commit: c, CellsHTML: cellsHTML(c.Cells)})
	}
	for _, p := range g.Platforms {
		v.Columns += len(p.Builders)
	}
	link := func(page int) string {
		u := "/grid/" + escapePath(q.Repo) + "?"
		vals := r.URL.Query()
		vals.Set("page", strconv.Itoa(page))
		vals.Del("format")
		return u + vals.Encode()
	}
	if q.Page > 1 {
		v.PrevPage = link(q.Page - 1)
	}
	if g.More {
		v.NextPage = link(q.Page + 1)
	}
	title := "Grid: " + q.Repo
	if q.Branch != "" {
		title += " " + q.Branch
	}
	return s.show(w, r, "grid", title, v)
}

// escapePath escapes each segment of a slash-separated name.
func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}
