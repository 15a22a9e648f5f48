package dashboard

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/tryd-ci/tryd/coordinator/api"
)

// CoordinatorGrid builds grids from the coordinator's builds, filtered by
// the repo and branch labels. It is safe for concurrent use.
//
// A finished build never changes, so CoordinatorGrid keeps, per
// repository and branch, the builds it has read, and each request asks
// the coordinator only for builds newer than the newest it holds, again
// for the range of builds it holds as running, and for older builds when
// a page reaches past what it holds. A grid on a screen therefore costs
// one or two small list calls per refresh instead of thousands of builds.
type CoordinatorGrid struct {
	Client *api.Client
	// MaxBuilds bounds the builds held (and read) for one grid (default
	// 20000); MaxGrids bounds how many grids are held, least recently
	// used dropped first (default 16).
	MaxBuilds int
	MaxGrids  int

	mu    sync.Mutex
	grids map[gridKey]*gridState
	tick  int64
}

type gridKey struct{ repo, branch string }

// gridState is what is held of one grid: builds by ID, the range of IDs
// read (everything in (oldest, newest] with the grid's labels is known),
// and whether the oldest build has been reached.
type gridState struct {
	mu       sync.Mutex
	builds   map[int64]api.Build
	revs     map[string]int
	newest   int64
	oldest   int64
	complete bool
	lastUse  int64
}

// listPage is the coordinator's largest list answer; newProbe the size of
// the first list call for builds newer than those held.
const (
	listPage = 1000
	newProbe = 100
)

func (g *CoordinatorGrid) state(k gridKey) *gridState {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.grids == nil {
		g.grids = map[gridKey]*gridState{}
	}
	g.tick++
	st := g.grids[k]
	if st == nil {
		maxGrids := g.MaxGrids
		if maxGrids <= 0 {
			maxGrids = 16
		}
		for len(g.grids) >= maxGrids {
			var oldK gridKey
			old := int64(-1)
			for k2, s2 := range g.grids {
				if old < 0 || s2.lastUse < old {
					oldK, old = k2, s2.lastUse
				}
			}
			delete(g.grids, oldK)
		}
		st = &gridState{builds: map[int64]api.Build{}, revs: map[string]int{}}
		g.grids[k] = st
	}
	st.lastUse = g.tick
	return st
}

// add keeps a post-submit build of the grid (try builds and builds
// without revision or builder are not grid cells).
func (st *gridState) add(b api.Build) {
	if b.Labels[LabelKind] == "try" || b.Labels[LabelRevision] == "" || b.Labels[LabelBuilder] == "" {
		return
	}
	b.Jobs = nil
	if _, ok := st.builds[b.ID]; !ok {
		st.revs[b.Labels[LabelRevision]]++
	}
	st.builds[b.ID] = b
}

// Grid implements GridSource.
func (g *CoordinatorGrid) Grid(ctx context.Context, q GridQuery) (*Grid, error) {
	maxBuilds := g.MaxBuilds
	if maxBuilds <= 0 {
		maxBuilds = 20000
	}
	labels := map[string]string{LabelRepo: q.Repo}
	if q.Branch != "" {
		labels[LabelBranch] = q.Branch
	}
	st := g.state(gridKey{q.Repo, q.Branch})
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.newest == 0 {
		// Nothing held yet (or the grid was empty): read from the top.
		st.complete, st.oldest = false, 0
	}
	list := func(o api.ListOptions) ([]api.Build, error) {
		o.Labels = labels
		bs, err := g.Client.Builds(ctx, o)
		if err != nil {
			return nil, fmt.Errorf("dashboard: grid %s: %w", q.Repo, err)
		}
		return bs, nil
	}
	if st.newest > 0 {
		// Builds newer than the newest held, newest first.
		var before int64
		limit := newProbe
		newest := st.newest
	newer:
		for {
			bs, err := list(api.ListOptions{Limit: limit, Before: before})
			if err != nil {
				return nil, err
			}
			for _, b := range bs {
				if b.ID <= st.newest {
					break newer
				}
				st.add(b)
				newest = max(newest, b.ID)
			}
			if len(bs) < limit {
				break
			}
			before, limit = bs[len(bs)-1].ID, listPage
		}
		// Builds held as running may have finished: read the range
		// they span again.
		lo, hi := int64(0), int64(0)
		for id, b := range st.builds {
			if b.State == api.BuildRunning && id <= st.newest {
				if lo == 0 || id < lo {
					lo = id
				}
				hi = max(hi, id)
			}
		}
		for before := hi + 1; hi > 0; {
			bs, err := list(api.ListOptions{Limit: listPage, Before: before})
			if err != nil {
				return nil, err
			}
			for _, b := range bs {
				if b.ID >= lo {
					st.add(b)
				}
			}
			if len(bs) < listPage || bs[len(bs)-1].ID <= lo {
				break
			}
			before = bs[len(bs)-1].ID
		}
		st.newest = newest
	}
	// Older builds, until one commit more than the page needs is known
	// (to tell whether there is a next page and to mark first failures
	// on the page's last row) or the builds run out.
	need := q.Page*q.PerPage + 1
	for !st.complete && len(st.revs) <= need && len(st.builds) < maxBuilds {
		bs, err := list(api.ListOptions{Limit: listPage, Before: st.oldest})
		if err != nil {
			return nil, err
		}
		for _, b := range bs {
			st.add(b)
			st.newest = max(st.newest, b.ID)
		}
		if len(bs) < listPage {
			st.complete = true
		}
		if len(bs) > 0 {
			st.oldest = bs[len(bs)-1].ID
		}
		if st.oldest == 0 {
			st.complete = true
		}
	}
	ids := make([]int64, 0, len(st.builds))
	for id := range st.builds {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] > ids[j] })
	builds := make([]api.Build, len(ids))
	for i, id := range ids {
		builds[i] = st.builds[id]
	}
	return makeGrid(q, builds), nil
}
