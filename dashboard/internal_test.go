package dashboard

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
)

// gb is a build of the grid: commit n (1 oldest), builder, state.
func gb(id int64, n int, builder string, st api.BuildState) api.Build {
	return api.Build{ID: id, State: st, Labels: map[string]string{
		LabelRepo: "r", LabelRevision: "rev" + strconv.Itoa(n), LabelBuilder: builder,
		LabelTime: time.Unix(int64(n)*3600, 0).UTC().Format(time.RFC3339),
	}}
}

func TestMakeGrid(t *testing.T) {
	ok, fail, run := api.BuildSucceeded, api.BuildFailed, api.BuildRunning
	// Newest first, as the coordinator lists them.
	builds := []api.Build{
		gb(9, 5, "a-x", fail),
		gb(8, 4, "a-x", run),
		gb(7, 3, "a-x", fail), // first failure: 2 not built, 1 ok
		gb(6, 1, "a-x", ok),
		gb(5, 3, "b-y-race", ok),
		gb(4, 2, "b-y-race", fail), // failed at the oldest build of b-y-race: not known as first
		gb(3, 5, "b-y", ok),
		gb(2, 4, "b-y", ok),
		gb(1, 4, "b-y", fail), // older build of the same cell: the newest wins
	}
	g := makeGrid(GridQuery{Repo: "r", Page: 1, PerPage: 10}, builds)
	if len(g.Platforms) != 2 || g.Platforms[0].Name != "a-x" || g.Platforms[1].Name != "b-y" || strings.Join(g.Platforms[1].Builders, ",") != "b-y,b-y-race" {
		t.Fatalf("platforms %+v", g.Platforms)
	}
	var revs []string
	for _, c := range g.Commits {
		revs = append(revs, c.Revision)
	}
	if strings.Join(revs, ",") != "rev5,rev4,rev3,rev2,rev1" {
		t.Fatalf("rows %v, want newest commit first", revs)
	}
	col := map[string]int{"a-x": 0, "b-y": 1, "b-y-race": 2}
	tests := []struct {
		name    string
		row     int
		builder string
		want    Cell
	}{
		{"still failing", 0, "a-x", Cell{State: CellFail, BuildID: 9}},
		{"running", 1, "a-x", Cell{State: CellRunning, BuildID: 8}},
		{"first failure across a gap", 2, "a-x", Cell{State: CellFail, BuildID: 7, FirstFailure: true}},
		{"not built", 3, "a-x", Cell{State: CellNone}},
		{"newest build of a cell", 1, "b-y", Cell{State: CellOK, BuildID: 2}},
		{"failure with nothing older", 3, "b-y-race", Cell{State: CellFail, BuildID: 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := g.Commits[tc.row].Cells[col[tc.builder]]; got != tc.want {
				t.Errorf("cell = %+v, want %+v", got, tc.want)
			}
		})
	}
	p := makeGrid(GridQuery{Repo: "r", Page: 2, PerPage: 2}, builds)
	if len(p.Commits) != 2 || p.Commits[0].Revision != "rev3" || !p.More || !p.Commits[0].Cells[0].FirstFailure {
		t.Errorf("page 2: %+v", p)
	}
	if last := makeGrid(GridQuery{Repo: "r", Page: 3, PerPage: 2}, builds); len(last.Commits) != 1 || last.More {
		t.Errorf("page 3: %+v", last)
	}
	if beyond := makeGrid(GridQuery{Repo: "r", Page: 9, PerPage: 2}, builds); len(beyond.Commits) != 0 || beyond.More {
		t.Errorf("page 9: %+v", beyond)
	}
}

func TestCellsHTML(t *testing.T) {
	got := string(cellsHTML([]Cell{{State: CellOK, BuildID: 1}, {State: CellFail, BuildID: 2, FirstFailure: true}, {State: CellNone}, {State: `"><script>`, BuildID: 3}}))
	want := `<td class="c ok"><a href="/builds/1" title="ok">ok</a></td>` +
		`<td class="c fail first"><a href="/builds/2" title="fail: first failure">FAIL</a></td>` +
		`<td class="c none"></td>` +
		`<td class="c "><a href="/builds/3" title=""></a></td>`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/builds/3":            "/builds/3",
		"":                     "/",
		"//evil.example/":      "/",
		"https://evil.example": "/",
		"/\\evil":              "/",
		"javascript:alert(1)":  "/",
		"/a\r\nSet-Cookie: x":  "/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzSessionCookie checks that no cookie value but one the admin
// issued is a session, and that parsing never panics.
func FuzzSessionCookie(f *testing.F) {
	a := newAdmin("token")
	nonce := strings.Repeat("ab", 16)
	valid := nonce + "." + a.mac("session", nonce)
	f.Add(valid)
	f.Add("")
	f.Add(".")
	f.Add(nonce + "." + a.mac("csrf", nonce))
	f.Fuzz(func(t *testing.T, v string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: v})
		// Only the issued session verifies: a fuzzer cannot forge the
		// HMAC of another nonce.
		if n, ok := a.session(r); ok && n != nonce {
			t.Fatalf("accepted forged session %q", v)
		}
	})
}
