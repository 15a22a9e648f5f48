package dashboard

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/maintner/query"
	tbclient "github.com/tryd-ci/tryd/trybot/client"
)

// ---- home ----

// homeView is the home page.
type homeView struct {
	Repos []Repo `json:"repos"`
	// CorpusRepos and CorpusProjects come from the corpus (if a query
	// client is configured).
	CorpusRepos    []query.RepoSummary `json:"corpus_repos,omitempty"`
	CorpusProjects []query.Project     `json:"corpus_projects,omitempty"`
	// TryEnabled says whether try runs are shown (a trybot client is
	// configured).
	TryEnabled bool           `json:"try_enabled"`
	Running    []tbclient.Run `json:"running_try_runs"`
	Recent     []tbclient.Run `json:"recent_try_runs"`
	Queue      queueView      `json:"queue"`
	Workers    poolView       `json:"workers"`
	// RecentBuilds are the newest coordinator builds of any kind.
	RecentBuilds []api.Build `json:"recent_builds"`
	// Errors lists sources that could not be read (the page still
	// shows the rest).
	Errors []string `json:"errors,omitempty"`
}

// queueView summarizes the coordinator's queue: jobs ready and waiting
// for a slot across running builds, and since when the oldest running
// build with queued jobs exists.
type queueView struct {
	RunningBuilds int        `json:"running_builds"`
	QueuedJobs    int        `json:"queued_jobs"`
	RunningJobs   int        `json:"running_jobs"`
	OldestQueued  *time.Time `json:"oldest_queued_build_created,omitempty"`
	OldestWaitMS  int64      `json:"oldest_wait_ms"`
}

// poolView summarizes the workers.
type poolView struct {
	Workers   int `json:"workers"`
	Connected int `json:"connected"`
	Slots     int `json:"slots"`
	Busy      int `json:"busy"`
}

// maxRunningScan bounds how many running builds the queue summary reads.
const maxRunningScan = 1000

func (s *Server) serveHome(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	v := homeView{Repos: s.opts.Repos, TryEnabled: s.opts.Trybot != nil}
	var errs [6]error
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		bs, err := s.opts.Coordinator.Builds(gctx, api.ListOptions{State: api.BuildRunning, Limit: maxRunningScan})
		errs[0] = err
		v.Queue = summarizeQueue(bs, s.opts.Now())
		return nil
	})
	g.Go(func() error {
		ws, err := s.opts.Coordinator.Workers(gctx)
		errs[1] = err
		v.Workers = summarizePool(ws)
		return nil
	})
	g.Go(func() error {
		bs, err := s.opts.Coordinator.Builds(gctx, api.ListOptions{Limit: 20})
		v.RecentBuilds, errs[2] = bs, err
		return nil
	})
	if s.opts.Trybot != nil {
		g.Go(func() error {
			runs, err := s.opts.Trybot.Runs(gctx, tbclient.ListOptions{State: tbclient.StateRunning, Limit: 50})
			v.Running, errs[3] = runs, err
			return nil
		})
		g.Go(func() error {
			runs, err := s.opts.Trybot.Runs(gctx, tbclient.ListOptions{Limit: 20})
			for _, run := range runs {
				if run.State.Finished() || run.State == tbclient.StateReporting {
					v.Recent = append(v.Recent, run)
				}
			}
			errs[4] = err
			return nil
		})
	}
	if s.opts.Query != nil {
		g.Go(func() error {
			repos, err := s.opts.Query.Repos(gctx)
			if err == nil {
				v.CorpusRepos = repos
				v.CorpusProjects, err = s.opts.Query.Projects(gctx)
			}
			errs[5] = err
			return nil
		})
	}
	g.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	// Lists are [] rather than null in JSON.
	v.Repos = append([]Repo{}, v.Repos...)
	v.Running = append([]tbclient.Run{}, v.Running...)
	v.Recent = append([]tbclient.Run{}, v.Recent...)
	v.RecentBuilds = append([]api.Build{}, v.RecentBuilds...)
	for _, err := range errs {
		if err != nil {
			v.Errors = append(v.Errors, err.Error())
		}
	}
	return s.show(w, r, "home", "tryd", v)
}

func summarizeQueue(bs []api.Build, now time.Time) queueView {
	q := queueView{RunningBuilds: len(bs)}
	for _, b := range bs {
		q.QueuedJobs += b.Counts[api.JobQueued]
		q.RunningJobs += b.Counts[api.JobRunning]
		if b.Counts[api.JobQueued] > 0 && (q.OldestQueued == nil || b.Created.Before(*q.OldestQueued)) {
			c := b.Created
			q.OldestQueued = &c
		}
	}
	if q.OldestQueued != nil {
		q.OldestWaitMS = max(0, now.Sub(*q.OldestQueued).Milliseconds())
	}
	return q
}

func summarizePool(ws []api.Worker) poolView {
	p := poolView{Workers: len(ws)}
	for _, w := range ws {
		if w.Connected {
			p.Connected++
			p.Slots += w.Slots
			p.Busy += len(w.Running)
		}
	}
	return p
}

// ---- workers ----

// workersView is the workers page.
type workersView struct {
	Pool    poolView     `json:"pool"`
	Workers []workerView `json:"workers"`
}

type workerView struct {
	api.Worker
	// LabelList is Labels sorted as "k=v".
	LabelList []string `json:"-"`
	// SeenAgoMS is how long ago the last heartbeat was (-1: never).
	SeenAgoMS int64 `json:"last_seen_ago_ms"`
}

func (s *Server) serveWorkers(w http.ResponseWriter, r *http.Request) error {
	ws, err := s.opts.Coordinator.Workers(r.Context())
	if err != nil {
		return err
	}
	now := s.opts.Now()
	v := workersView{Pool: summarizePool(ws), Workers: []workerView{}}
	for _, wk := range ws {
		wv := workerView{Worker: wk, LabelList: sortedLabels(wk.Labels), SeenAgoMS: -1}
		if !wk.LastSeen.IsZero() {
			wv.SeenAgoMS = max(0, now.Sub(wk.LastSeen).Milliseconds())
		}
		v.Workers = append(v.Workers, wv)
	}
	sort.Slice(v.Workers, func(i, j int) bool {
		a, b := v.Workers[i], v.Workers[j]
		if a.Connected != b.Connected {
			return a.Connected
		}
		return a.Name < b.Name
	})
	return s.show(w, r, "workers", "Workers", v)
}

func sortedLabels(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// ---- build ----

// buildView is the build page: the build, its jobs in a stable order
// with timing, and a Gantt-style timeline.
type buildView struct {
	Build      *api.Build `json:"build"`
	Jobs       []jobView  `json:"jobs"`
	Labels     []string   `json:"-"`
	Timeline   timeline   `json:"-"`
	Builder    string     `json:"builder,omitempty"`
	ForcedFrom string     `json:"-"`
	DurationMS int64      `json:"duration_ms"`
}

type jobView struct {
	api.JobStatus
	DurationMS int64 `json:"duration_ms"`
	// LastAttempt is the ID of the attempt that stands for the job (its
	// log): the latest not abandoned (api.LatestAttempt).
	LastAttempt string   `json:"last_attempt,omitempty"`
	Cached      bool     `json:"cached"`
	DepNames    []string `json:"-"`
}

// timeline places jobs on a shared time axis in an SVG.
type timeline struct {
	Width, Height int
	Bars          []bar
	Span          string
}

type bar struct {
	X, Y, W float64
	Name    string
	State   string
	Label   string
	Attempt string
}

const (
	timelineWidth = 900.0
	barHeight     = 18
	labelWidth    = 220.0
)

func (s *Server) serveBuild(w http.ResponseWriter, r *http.Request) error {
	id, err := buildID(r)
	if err != nil {
		return err
	}
	b, err := s.opts.Coordinator.Build(r.Context(), id)
	if err != nil {
		return err
	}
	return s.show(w, r, "build", "Build "+strconv.FormatInt(id, 10), makeBuildView(b, s.opts.Now()))
}

func makeBuildView(b *api.Build, now time.Time) buildView {
	v := buildView{Build: b, Labels: sortedLabels(b.Labels), Builder: b.Labels["builder"], ForcedFrom: b.Labels["forced_from"]}
	end := now
	if b.Finished != nil {
		end = *b.Finished
	}
	v.DurationMS = max(0, end.Sub(b.Created).Milliseconds())
	names := map[string]string{}
	for _, j := range b.Jobs {
		names[j.ID] = j.Name
	}
	for _, j := range b.Jobs {
		jv := jobView{JobStatus: j, Cached: j.State == api.JobCached}
		if j.Started != nil {
			e := now
			if j.Finished != nil {
				e = *j.Finished
			}
			jv.DurationMS = max(0, e.Sub(*j.Started).Milliseconds())
		}
		if a := api.LatestAttempt(j.Attempts); a != nil {
			jv.LastAttempt = a.ID
		}
		for _, d := range j.Deps {
			if n, ok := names[d]; ok {
				jv.DepNames = append(jv.DepNames, n)
			} else {
				jv.DepNames = append(jv.DepNames, shortRev(d))
			}
		}
		v.Jobs = append(v.Jobs, jv)
	}
	// Jobs in the order they started (not started last, by name).
	sort.SliceStable(v.Jobs, func(i, k int) bool {
		a, c := v.Jobs[i].Started, v.Jobs[k].Started
		switch {
		case a != nil && c != nil && !a.Equal(*c):
			return a.Before(*c)
		case (a == nil) != (c == nil):
			return a != nil
		}
		return v.Jobs[i].Name < v.Jobs[k].Name
	})
	v.Timeline = makeTimeline(b.Created, end, v.Jobs, now)
	return v
}

func makeTimeline(start, end time.Time, jobs []jobView, now time.Time) timeline {
	span := end.Sub(start)
	if span <= 0 {
		span = time.Millisecond
	}
	t := timeline{Width: int(labelWidth + timelineWidth + 10), Span: fmtDur(span)}
	scale := timelineWidth / float64(span)
	y := 0
	for _, j := range jobs {
		if j.Started == nil {
			continue
		}
		e := now
		if j.Finished != nil {
			e = *j.Finished
		}
		x := float64(j.Started.Sub(start)) * scale
		wd := max(float64(e.Sub(*j.Started))*scale, 1)
		t.Bars = append(t.Bars, bar{
			X: labelWidth + max(0, x), Y: float64(y*(barHeight+4)) + 2, W: min(wd, timelineWidth),
			Name: j.Name, State: string(j.State), Label: j.Name + " · " + string(j.State) + " · " + fmtMS(j.DurationMS), Attempt: j.LastAttempt,
		})
		y++
	}
	t.Height = y*(barHeight+4) + 4
	return t
}

// ---- try runs ----

// tryRunView is a try run page.
type tryRunView struct {
	Run    *tbclient.Run  `json:"run"`
	Builds []tryBuildView `json:"builds"`
	// Others are other runs of the same change (patch sets, reruns).
	Others []tbclient.Run `json:"other_runs,omitempty"`
}

type tryBuildView struct {
	tbclient.Build
	Failed []failedJobView `json:"failed"`
}

type failedJobView struct {
	tbclient.FailedJob
	// Attempt is the failed job's latest attempt (its log page).
	Attempt string `json:"attempt,omitempty"`
	// Tail is the end of the job's log (at most LogTailLines lines).
	Tail      string `json:"tail,omitempty"`
	TailError string `json:"tail_error,omitempty"`
}

func (s *Server) needTrybot() error {
	if s.opts.Trybot == nil {
		return errors.Join(errNotFound, errors.New("try runs are not available: no trybot configured"))
	}
	return nil
}

func (s *Server) serveTryRun(w http.ResponseWriter, r *http.Request) error {
	if err := s.needTrybot(); err != nil {
		return err
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return errors.Join(errNotFound, errors.New("bad try run ID"))
	}
	run, err := s.opts.Trybot.Run(r.Context(), id)
	if err != nil {
		return err
	}
	v, err := s.tryRunView(r.Context(), run)
	if err != nil {
		return err
	}
	return s.show(w, r, "tryrun", tryTitle(run), v)
}

func tryTitle(run *tbclient.Run) string {
	t := "Try run " + strconv.FormatInt(run.ID, 10) + ": " + run.Repo + " " + strconv.Itoa(int(run.Change))
	if run.PatchSet != 0 {
		t += "/" + strconv.Itoa(int(run.PatchSet))
	}
	return t
}

func (s *Server) tryRunView(ctx context.Context, run *tbclient.Run) (*tryRunView, error) {
	v := &tryRunView{Run: run}
	v.Builds = make([]tryBuildView, len(run.Builds))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, b := range run.Builds {
		v.Builds[i] = tryBuildView{Build: b}
		if len(b.Failed) == 0 || b.BuildID == 0 {
			continue
		}
		g.Go(func() error {
			v.Builds[i].Failed = s.failedJobs(gctx, b)
			return nil
		})
	}
	g.Go(func() error {
		others, err := s.opts.Trybot.Runs(gctx, tbclient.ListOptions{Repo: run.Repo, Change: run.Change, Review: run.Review, Limit: 20})
		for _, o := range others {
			if o.ID != run.ID {
				v.Others = append(v.Others, o)
			}
		}
		_ = err // the list of other runs is optional
		return nil
	})
	g.Wait()
	return v, ctx.Err()
}

// failedJobs finds each failed job's latest attempt in the build and
// reads the tail of its log.
func (s *Server) failedJobs(ctx context.Context, b tbclient.Build) []failedJobView {
	out := make([]failedJobView, len(b.Failed))
	build, err := s.opts.Coordinator.Build(ctx, b.BuildID)
	for i, f := range b.Failed {
		out[i] = failedJobView{FailedJob: f}
		if err != nil {
			out[i].TailError = err.Error()
			continue
		}
		for _, j := range build.Jobs {
			a := api.LatestAttempt(j.Attempts)
			if j.ID != f.JobID || a == nil {
				continue
			}
			out[i].Attempt = a.ID
			tail, terr := s.logTail(ctx, *a)
			out[i].Tail = tail
			if terr != nil {
				out[i].TailError = terr.Error()
			}
		}
	}
	return out
}

// tailBytes is how much of the end of a log is read for its tail.
const tailBytes = 16 << 10

func (s *Server) logTail(ctx context.Context, a api.Attempt) (string, error) {
	off := max(0, a.LogBytes-tailBytes)
	rc, err := s.opts.Coordinator.AttemptLog(ctx, a.ID, off, false)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	var b strings.Builder
	if _, err := copyAtMost(&b, rc, tailBytes); err != nil {
		return "", err
	}
	text := b.String()
	if off > 0 {
		// Drop the partial first line.
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			text = text[i+1:]
		}
	}
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if n := s.opts.LogTailLines; len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return plainText(strings.Join(lines, "\n")), nil
}

// serveTryList lists try runs, filtered like the trybot API. With a
// change (and patch set), it shows the newest matching run, so that
// /try?repo=R&change=N&patch_set=P is a stable link to a patch set's run.
func (s *Server) serveTryList(w http.ResponseWriter, r *http.Request) error {
	if err := s.needTrybot(); err != nil {
		return err
	}
	o, err := tbclient.ParseListOptions(r.URL.Query())
	if err != nil {
		return badRequest("%v", err)
	}
	runs, err := s.opts.Trybot.Runs(r.Context(), o)
	if err != nil {
		return err
	}
	if o.Change != 0 {
		if len(runs) == 0 {
			return errors.Join(errNotFound, errors.New("no try run for that change"))
		}
		v, err := s.tryRunView(r.Context(), &runs[0])
		if err != nil {
			return err
		}
		return s.show(w, r, "tryrun", tryTitle(&runs[0]), v)
	}
	return s.show(w, r, "tryruns", "Try runs", tbclient.RunList{Runs: runs})
}
