package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/worker/artifact"
	"github.com/tryd-ci/tryd/worker/proc"
	"github.com/tryd-ci/tryd/worker/source"
)

// Options configures a Worker. Client and Dir are required.
type Options struct {
	// Client talks to the coordinator with this worker's token.
	Client *api.Client
	// Dir holds the worker's files: jobs/ (one fresh directory per job,
	// removed afterwards), git/ (local clones) and cache/ (artifacts).
	Dir string
	// Name is sent at registration; empty means the token's name.
	Name string
	// Labels are announced to the coordinator; "os" and "arch" are added
	// from the running system unless set.
	Labels map[string]string
	// Slots is how many jobs run at once (default runtime.NumCPU()).
	Slots int
	// Version is reported at registration.
	Version string
	// BaseEnv is the environment every command starts from, before the
	// per-job TMPDIR, TRYD_WORKER_RUN (which lets a restarted worker find
	// and kill processes a crashed run left behind) and the command's own
	// env (default: PATH and HOME of the worker process).
	BaseEnv []string
	// SourceCredentials are tokens for source repositories that require
	// one, such as a gitmirror configured with tokens; each goes only to
	// URLs under its prefix (see source.Credential).
	SourceCredentials []source.Credential
	// CacheBytes bounds the local artifact cache (default 10 GiB).
	CacheBytes int64
	// MaxOutputBytes bounds one job's outputs (default 4 GiB).
	MaxOutputBytes int64
	// DefaultTimeout bounds a job whose assignment carries none
	// (default 1h).
	DefaultTimeout time.Duration
	// DrainTimeout is how long Run lets running jobs finish after its
	// context is cancelled before it kills them and gives them back to
	// the coordinator (default 10s; negative gives them back at once).
	DrainTimeout time.Duration
	// LogChunkBytes and LogFlushInterval shape live log streaming
	// (defaults 64 KiB and 100ms).
	LogChunkBytes    int
	LogFlushInterval time.Duration
	// Prefetch is how many assignments beyond its free slots the worker
	// asks for and queues, when the coordinator offers prefetching, so
	// that it can report results in batches without idle slots (default
	// 4 x Slots, the most a coordinator hands out; negative: none).
	Prefetch int
	// ReportDelay is how long a finished job's result may wait to be
	// reported with others while the worker holds more than half its
	// Prefetch queued (default 5ms). Results go out at once otherwise.
	ReportDelay time.Duration
	// MinBackoff and MaxBackoff bound the delay between attempts to reach
	// the coordinator (defaults 100ms and 5s).
	MinBackoff, MaxBackoff time.Duration
	// Log receives the worker's own logs; nil discards.
	Log logrus.FieldLogger
	// Registry receives the worker's metrics; nil registers nowhere.
	Registry *prometheus.Registry
}

// Worker runs jobs for one coordinator.
type Worker struct {
	opts    Options
	log     logrus.FieldLogger
	jobsDir string
	jobDirs chan string // clean job directories ready for reuse
	runID   string      // see runVar
	lock    *os.File    // flock'ed: one worker per directory
	devNull *os.File    // every command's stdin
	paths   *proc.PathCache
	cache   *artifact.Cache
	sources *source.Store
	m       *metrics

	uploadedMu sync.Mutex
	uploadedOK map[string]bool
}

// New validates opts, prepares the worker's directories (clearing job
// directories left by an earlier run) and returns a Worker.
func New(opts Options) (*Worker, error) {
	if opts.Client == nil {
		return nil, errors.New("worker: Options.Client is nil")
	}
	if opts.Dir == "" {
		return nil, errors.New("worker: Options.Dir is empty")
	}
	if opts.Slots <= 0 {
		opts.Slots = runtime.NumCPU()
	}
	labels := map[string]string{"os": runtime.GOOS, "arch": runtime.GOARCH}
	for k, v := range opts.Labels {
		labels[k] = v
	}
	opts.Labels = labels
	if opts.BaseEnv == nil {
		for _, k := range []string{"PATH", "HOME"} {
			if v, ok := os.LookupEnv(k); ok {
				opts.BaseEnv = append(opts.BaseEnv, k+"="+v)
			}
		}
	}
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = 10 << 30
	}
	if opts.DefaultTimeout <= 0 {
		opts.DefaultTimeout = time.Hour
	}
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = 10 * time.Second
	}
	if opts.LogChunkBytes <= 0 {
		opts.LogChunkBytes = 64 << 10
	}
	if opts.LogFlushInterval <= 0 {
		opts.LogFlushInterval = 100 * time.Millisecond
	}
	if opts.Prefetch == 0 {
		opts.Prefetch = 4 * opts.Slots
	}
	if opts.ReportDelay <= 0 {
		opts.ReportDelay = 5 * time.Millisecond
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(5*time.Second, opts.MinBackoff)
	}
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	w := &Worker{opts: opts, log: log, jobsDir: filepath.Join(opts.Dir, "jobs"), uploadedOK: map[string]bool{}, jobDirs: make(chan string, 2*opts.Slots), paths: proc.NewPathCache(0, nil)}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	// One worker per directory: another would reap this one's jobs.
	lock, err := os.OpenFile(filepath.Join(opts.Dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("worker: directory %s is in use by another worker: %w", opts.Dir, err)
	}
	w.lock = lock
	if w.devNull, err = os.Open(os.DevNull); err != nil {
		lock.Close()
		return nil, fmt.Errorf("worker: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			lock.Close()
			w.devNull.Close()
		}
	}()
	// Kill what a crashed predecessor left running before clearing its
	// job directories.
	if err := w.newRun(); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(w.jobsDir); err != nil {
		return nil, fmt.Errorf("worker: clear %s: %w", w.jobsDir, err)
	}
	if err := os.MkdirAll(w.jobsDir, 0o755); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if w.cache, err = artifact.OpenCache(filepath.Join(opts.Dir, "cache"), opts.CacheBytes); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if w.sources, err = source.New(source.Options{Dir: filepath.Join(opts.Dir, "git"), Credentials: opts.SourceCredentials, Log: log, Registry: opts.Registry}); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if w.m, err = newMetrics(opts.Registry, w.cache); err != nil {
		return nil, err
	}
	ok = true
	return w, nil
}

// Close releases the worker's directory (after Run has returned).
func (w *Worker) Close() error {
	w.devNull.Close()
	return w.lock.Close()
}

func (w *Worker) uploaded(digest string) bool {
	w.uploadedMu.Lock()
	defer w.uploadedMu.Unlock()
	return w.uploadedOK[digest]
}

func (w *Worker) markUploaded(digest string) {
	w.uploadedMu.Lock()
	defer w.uploadedMu.Unlock()
	if len(w.uploadedOK) > 100_000 {
		clear(w.uploadedOK)
	}
	w.uploadedOK[digest] = true
}

// running is one attempt in progress.
type running struct {
	cancel context.CancelCauseFunc
	// forgotten is set when the coordinator cancelled the attempt: its
	// result is not reported.
	forgotten bool
	jobID     string
	run       startedAt
}

// localResult is how an attempt of this worker ended, for the pipelined
// assignments that wait for it (api.Assignment.After).
type localResult struct {
	ok     bool // succeeded, and not cancelled by the coordinator
	jobID  string
	digest string
}

// maxLocalResults bounds the attempts remembered for pipelined
// assignments (a pipelined assignment arrives while the attempts it
// waits for run, so only recent ones matter).
const maxLocalResults = 4096

// pipelined decides about a backlog assignment that waits for attempts
// of this worker (After): start it (with its dependencies' digests
// filled in from their results here), keep waiting, or drop it because
// one of them failed, was cancelled or is unknown (the coordinator
// drops it too and its job runs in the ordinary way).
func pipelined(a *api.Assignment, done map[string]localResult, live func(id string) bool) (start, drop bool) {
	var outs []localResult
	for _, id := range a.After {
		r, ok := done[id]
		switch {
		case !ok && live(id):
			return false, false
		case !ok || !r.ok:
			return false, true
		}
		outs = append(outs, r)
	}
	deps := make([]api.DepOutput, len(a.Deps))
	copy(deps, a.Deps)
	for i, d := range deps {
		if d.Digest != "" {
			continue
		}
		for _, r := range outs {
			if r.jobID == d.JobID {
				deps[i].Digest = r.digest
			}
		}
		if deps[i].Digest == "" {
			return false, true // names a dependency it does not wait for
		}
	}
	a.Deps, a.After = deps, nil
	return true, false
}

// pollInfo describes a poll in flight.
type pollInfo struct {
	free     int  // slots it asked for
	prefetch int  // prefetched assignments it asked for
	waits    bool // it carries no results, so it may wait for work
	dropped  bool // replaced by a newer poll; its failure is expected
	// answered is set when the first part of an early answer arrived:
	// the poll only waits for its results' acknowledgement.
	answered bool
	cancel   context.CancelFunc
	// starts are the prefetched attempts' starts it reports, to report
	// again if it fails (at their original times).
	starts []startedAt
}

// pollAnswer is the outcome of one poll request, or the first part of
// an early answer (see api.PollRequest.Early).
type pollAnswer struct {
	seq  int
	resp *api.PollResponse
	req  api.PollRequest
	err  error
	// partial marks the first part of an early answer: its work is
	// taken at once, and the acknowledgement of the poll's results
	// follows as another pollAnswer with taken set.
	partial, taken bool
}

// errShutdown is the cause given to jobs cancelled by a worker shutdown.
var errShutdown = errors.New("worker shutting down")

// Run registers with the coordinator and runs jobs until ctx is done,
// then drains: it stops taking work, lets running jobs finish for up to
// DrainTimeout, gives back the rest (reported as state "error", which the
// coordinator retries elsewhere) and returns nil. It survives coordinator
// restarts and outages by re-registering with backoff; it returns an
// error only when the coordinator refuses the worker's token.
func (w *Worker) Run(ctx context.Context) error {
	// Requests keep working during the drain; they are bounded by their
	// own timeouts and by stop.
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()

	var (
		workerID string
		early    bool        // the coordinator answers work before results are durable
		prefetch int         // assignments to hold beyond free slots (0: the coordinator does not prefetch)
		started  []startedAt // prefetched attempts started, not yet reported
		// forgottenOK is set when the coordinator records starts it
		// does not know (api.RegisterResponse.ForgottenStarts): then
		// starts not reported when the session ended go to the next
		// one, and later holds those it could not record yet, sent
		// again with the polls that go out anyway.
		forgottenOK bool
		later       []startedAt
		// releaseOK is set when the coordinator asks for releases of
		// prefetched attempts (api.RegisterResponse.ReleaseRequests);
		// released are those dropped unstarted on its request, to
		// tell it at once (api.PollRequest.Released); flush sends the
		// starts at once too: the coordinator waits for the answer.
		releaseOK bool
		released  []string
		flush     bool
		// laterResults are results the coordinator could not record
		// yet (api.PollResponse.ResultsLater: this worker failed over
		// to a replica that has not claimed their build yet): listed
		// as running and sent again with later polls, like later.
		laterResults []api.AttemptResult
		// unreported are the runs whose results are not acknowledged
		// yet (see forgottenRuns).
		unreported  = map[string]startedAt{}
		laterSent   time.Time // when later went out last: once per pollWait
		firstReport time.Time // when the oldest unreported result or start came
		reportTimer *time.Timer
		reportAt    <-chan time.Time
		pollWait    time.Duration
		runningJobs = map[string]*running{}
		backlog     []api.Assignment // assigned but no free slot yet
		localDone   = map[string]localResult{}
		results     []api.AttemptResult
		holdsSent   bool
		evicted     []string              // evictions not yet told to the coordinator
		inFlight    = map[int]*pollInfo{} // by poll number
		pollSeq     int
		unacked     int // polls in flight that carry results
		backoff     time.Duration
		retryAt     <-chan time.Time
		draining    bool
		drainTimer  <-chan time.Time
		drainOver   bool // the drain timeout passed: stop trying to report
		// unconfirmed is set while reports to the coordinator fail: a
		// poll failed, and no poll sent since (seq > unconfirmedSeq) has
		// been answered. Meanwhile held assignments (prefetched, or
		// pipelined behind attempts here) are not started: a restarted
		// coordinator knows nothing of them and would refuse their runs
		// (PROTOCOL.md, "Assignments held during an outage").
		unconfirmed    bool
		unconfirmedSeq int
	)
	answers := make(chan pollAnswer, 4)
	finished := make(chan api.AttemptResult, w.opts.Slots*2+4)
	var jobs sync.WaitGroup
	defer jobs.Wait()
	pool := newGoPool()
	defer pool.close()

	startJob := func(a api.Assignment) {
		run := startedAt{id: a.AttemptID, at: time.Now(), build: a.BuildID, job: a.Job.ID, session: workerID}
		if a.Prefetched {
			if len(results) == 0 && len(started) == 0 {
				firstReport = time.Now()
			}
			started = append(started, run)
		}
		jctx, cancel := context.WithCancelCause(bg)
		runningJobs[a.AttemptID] = &running{cancel: cancel, jobID: a.Job.ID, run: run}
		w.m.running.Inc()
		jobs.Add(1)
		pool.Go(func() {
			defer jobs.Done()
			defer cancel(nil)
			res, cleanup := w.run(jctx, a)
			w.m.observe(res)
			finished <- res
			cleanup()
		})
	}
	runningIDs := func() []string {
		ids := make([]string, 0, len(runningJobs)+len(backlog))
		for id := range runningJobs {
			ids = append(ids, id)
		}
		for _, a := range backlog {
			ids = append(ids, a.AttemptID)
		}
		for _, r := range laterResults {
			ids = append(ids, r.AttemptID)
		}
		return ids
	}
	reportsFail := func() {
		if !unconfirmed {
			n := 0
			for _, a := range backlog {
				if held(a) {
					n++
				}
			}
			if n > 0 {
				w.log.WithField("held", n).Warn("reports to the coordinator fail: not starting held (prefetched or pipelined) assignments until it answers")
			}
		}
		unconfirmed, unconfirmedSeq = true, pollSeq
	}
	fail := func(err error) {
		if backoff == 0 {
			backoff = w.opts.MinBackoff
		} else {
			backoff = min(backoff*2, w.opts.MaxBackoff)
		}
		d := backoff/2 + rand.N(backoff/2+1)
		w.log.WithError(err).WithField("retry_in", d).Warn("coordinator unreachable")
		retryAt = time.After(d)
	}

	for {
		// Start backlog jobs in free slots.
		// (in order, past pipelined ones still waiting for their
		// dependencies here).
		live := func(id string) bool {
			if _, ok := runningJobs[id]; ok {
				return true
			}
			for _, b := range backlog {
				if b.AttemptID == id {
					return true
				}
			}
			return false
		}
		// Prefetched assignments start after the others (which the
		// coordinator counts as running already).
		for i, pass := 0, 0; pass < 2 && len(runningJobs) < w.opts.Slots && !draining; {
			if i == len(backlog) {
				i, pass = 0, pass+1
				continue
			}
			a := backlog[i]
			if a.Prefetched != (pass == 1) {
				i++
				continue
			}
			if len(a.After) > 0 {
				start, drop := pipelined(&a, localDone, live)
				if drop {
					backlog = append(backlog[:i], backlog[i+1:]...)
					continue
				}
				if !start {
					i++
					continue
				}
			}
			if unconfirmed && held(backlog[i]) {
				i++
				continue
			}
			backlog = append(backlog[:i], backlog[i+1:]...)
			startJob(a)
		}
		if draining && len(runningJobs) == 0 && (len(results) == 0 && unacked == 0 && (len(laterResults) == 0 || drainOver) || drainOver && retryAt != nil) {
			// Everything is reported (waiting polls end with stop), or
			// the coordinator stayed unreachable (or could not record
			// results) for the whole drain: what it has not heard of,
			// it will requeue.
			if n := len(results) + len(laterResults); n > 0 {
				w.log.WithField("results", n).Warn("exiting with unreported results; the coordinator will run those jobs again")
			}
			return nil
		}
		// Register when needed.
		if retryAt == nil && workerID == "" && len(inFlight) == 0 {
			// Registering again takes back every held assignment (a
			// restarted coordinator never knew them): drop them, and
			// leave them out of the registration's running list.
			kept := backlog[:0]
			for _, a := range backlog {
				if !held(a) {
					kept = append(kept, a)
				}
			}
			if n := len(backlog) - len(kept); n > 0 {
				w.log.WithField("dropped", n).Info("dropping held (prefetched or pipelined) assignments: registering again takes them back")
			}
			clear(backlog[len(kept):])
			backlog = kept
			rctx, cancel := context.WithTimeout(bg, 30*time.Second)
			// Attempts that finished while the coordinator was away
			// count as running until their results are reported, so
			// that the coordinator keeps them instead of rerunning.
			keep := runningIDs()
			for _, r := range results {
				keep = append(keep, r.AttemptID)
			}
			resp, err := w.opts.Client.Register(rctx, api.RegisterRequest{Name: w.opts.Name, Labels: w.opts.Labels, Slots: w.opts.Slots, Version: w.opts.Version, Running: keep})
			cancel()
			switch {
			case errors.Is(err, api.ErrUnauthorized) || errors.Is(err, api.ErrBadRequest):
				w.log.WithError(err).Error("coordinator refused registration")
				w.giveBack(runningJobs, stop)
				return fmt.Errorf("worker: register: %w", err)
			case err != nil:
				reportsFail()
				fail(err)
			default:
				workerID, backoff, early = resp.WorkerID, 0, resp.EarlyAssignments
				prefetch, forgottenOK = 0, resp.ForgottenStarts && early
				if !forgottenOK {
					// A coordinator that cannot record them: the
					// runs are missing from their jobs' histories.
					started, later = nil, nil
				} else if started = forgottenRuns(started, later, runningJobs, unreported); len(started)+len(later) > 0 {
					w.log.WithField("starts", len(started)+len(later)).Debug("reporting the runs of the previous session, for the coordinator to record those it does not know as abandoned")
				}
				if resp.PrefetchAssignments && early && w.opts.Prefetch > 0 {
					prefetch = w.opts.Prefetch
				}
				// The old session's releases: registering again took
				// back what it held.
				releaseOK, released = resp.ReleaseRequests && prefetch > 0, nil
				pollWait = time.Duration(min(resp.PollTimeoutMS, resp.HeartbeatIntervalMS)) * time.Millisecond
				holdsSent = false
				w.uploadedMu.Lock()
				clear(w.uploadedOK)
				w.uploadedMu.Unlock()
				w.log.WithFields(logrus.Fields{"worker_id": workerID, "slots": w.opts.Slots, "labels": w.opts.Labels}).Info("registered with the coordinator")
			}
		}
		// Polls: at most one waits for work at a time (the coordinator
		// wakes one waiting poll per worker); a poll that carries results
		// is answered at once and goes out whenever there are results
		// and no other report is in flight.
		// A waiting poll that asked for no slots is replaced when slots
		// free up (cancelled if it asked for no prefetched work either:
		// then it cannot have been given work, so dropping it loses
		// nothing; cancellations are sent again). One that asked for
		// some stays until it returns, leaving slots freed meanwhile
		// idle at most until then.
		queued := 0      // prefetched assignments not started
		pipelinedN := 0  // pipelined assignments waiting here
		confirm := false // held assignments wait for an answer of the coordinator
		for _, a := range backlog {
			if a.Prefetched {
				queued++
			} else if len(a.After) > 0 {
				pipelinedN++
			}
			confirm = confirm || unconfirmed && held(a)
		}
		w.m.heldPrefetched.Set(float64(queued))
		w.m.heldPipelined.Set(float64(pipelinedN))
		free := max(w.opts.Slots-len(runningJobs)-(len(backlog)-queued), 0)
		room := max(prefetch-queued, 0)
		if draining {
			free, room = 0, 0
		}
		var waiting *pollInfo
		reporting := 0
		for _, p := range inFlight {
			if p.waits && !p.dropped {
				waiting = p
			}
			if !p.waits && !p.answered {
				reporting++
			}
		}
		send := false
		switch {
		case workerID == "" || retryAt != nil:
		case (len(results) > 0 || len(started) > 0) && len(released) == 0 && !flush && queued > prefetch/2 && !draining && time.Since(firstReport) < w.opts.ReportDelay:
			// Enough prefetched work queued to keep the slots busy:
			// let results (and starts) batch up for a while
			// (ReportDelay at most).
			if reportAt == nil {
				reportTimer = time.NewTimer(w.opts.ReportDelay - time.Since(firstReport))
				reportAt = reportTimer.C
			}
		case len(results) > 0 || len(started) > 0 || len(released) > 0:
			// One report at a time (results batch up meanwhile): the
			// coordinator takes an attempt missing from two consecutive
			// polls' running lists as lost, so no more than one poll
			// may be built before the answer that assigned it arrives.
			// A report whose work arrived early and that waits only for
			// its acknowledgement does not count: the next may go.
			send = reporting == 0
		case reporting > 0:
			// Wait for the results' answers (they may bring work).
		case confirm && waiting != nil:
			// Held assignments wait for an answer of the coordinator,
			// which the waiting poll gives only when its wait ends
			// (up to pollWait), or never if it hangs on a link that
			// broke: ask at once instead. The waiting poll is left
			// to end by itself (it may carry prefetched work, taken
			// as usual when it comes); the coordinator answers it at
			// once when this poll waits.
			waiting.dropped = true
			send = true
		case waiting == nil:
			send = true
		case waiting.free == 0 && free > 0:
			waiting.dropped = true
			if waiting.prefetch == 0 {
				waiting.cancel()
			}
			// Else it may carry prefetched work, lost if cancelled (its
			// jobs stuck as held by this worker until the coordinator
			// takes them back, 5s and two polls later): it is answered
			// at once when the new poll waits, and taken as usual.
			send = true
		}
		if send {
			offer, offerPrefetch := free, room
			if (len(results) > 0 || len(started) > 0 || len(released) > 0) && waiting != nil && !waiting.dropped {
				// Never offer a slot the waiting poll already offers.
				offer = max(free-waiting.free, 0)
				offerPrefetch = max(room-waiting.prefetch, 0)
			}
			if reportTimer != nil {
				reportTimer.Stop()
				reportTimer, reportAt = nil, nil
			}
			evicted = append(evicted, w.cache.TakeEvicted()...)
			req := api.PollRequest{WorkerID: workerID, FreeSlots: offer, Prefetch: offerPrefetch, Running: runningIDs(), Results: results, Evicted: evicted,
				AnswersRelease: releaseOK, Released: released}
			released, flush = nil, false
			now := time.Now()
			starts := started
			if len(later)+len(laterResults) > 0 && now.Sub(laterSent) >= max(pollWait, time.Second) {
				// A poll with starts or results is answered at once:
				// not more often than a waiting poll's round.
				starts, later, laterSent = append(starts, later...), nil, now
				req.Results, laterResults = append(req.Results, laterResults...), nil
			}
			for _, st := range starts {
				s := api.StartedAttempt{AttemptID: st.id, AgoMS: now.Sub(st.at).Milliseconds()}
				if forgottenOK && st.session != workerID {
					// Of an earlier session: this one knows
					// nothing of it.
					s.BuildID, s.JobID = st.build, st.job
				}
				req.Started = append(req.Started, s)
			}
			started = nil
			evicted = nil
			if pollWait > 0 {
				req.WaitMS = pollWait.Milliseconds()
			}
			if draining && len(runningJobs) == 0 || confirm {
				// Only reporting results, or asking whether held
				// assignments are still this worker's: the answer
				// should come at once, not when there is work.
				req.WaitMS = 1
			}
			if !holdsSent {
				req.Holds, holdsSent = w.cache.Digests(), true
			}
			results = nil
			pollSeq++
			seq := pollSeq
			pctx, cancel := context.WithTimeout(bg, pollTimeout(pollWait, len(req.Results) > 0))
			// A poll that reports starts or releases is answered at
			// once, like one with results.
			inFlight[seq] = &pollInfo{free: offer, prefetch: offerPrefetch, waits: len(req.Results) == 0 && len(req.Started) == 0 && len(req.Released) == 0 && !confirm, cancel: cancel, starts: starts}
			if len(req.Results) > 0 {
				unacked++
			}
			pool.Go(func() {
				defer cancel()
				// Once Run has returned (bg is done), nobody reads.
				answer := func(a pollAnswer) {
					select {
					case answers <- a:
					case <-bg.Done():
					}
				}
				if !early {
					resp, err := w.opts.Client.Poll(pctx, req)
					answer(pollAnswer{seq: seq, resp: resp, req: req, err: err})
					return
				}
				taken := false
				resp, err := w.opts.Client.PollEarly(pctx, req, func(first *api.PollResponse) {
					taken = true
					answer(pollAnswer{seq: seq, resp: first, req: req, partial: true})
				})
				answer(pollAnswer{seq: seq, resp: resp, req: req, err: err, taken: taken})
			})
		}

		// take starts (or queues) a poll answer's work and stops what
		// it cancels.
		take := func(resp *api.PollResponse) {
			for _, id := range resp.Cancel {
				if r, ok := runningJobs[id]; ok {
					r.forgotten = true
					r.cancel(errors.New("cancelled by the coordinator"))
				}
				for i, a := range backlog {
					if a.AttemptID == id {
						backlog = append(backlog[:i], backlog[i+1:]...)
						break
					}
				}
				// A result the coordinator could not record: the
				// run was given up (the build went elsewhere).
				laterResults = slices.DeleteFunc(laterResults, func(r api.AttemptResult) bool { return r.AttemptID == id })
			}
			if len(resp.Release) > 0 {
				var ids []string
				backlog, ids = release(backlog, resp.Release)
				released = append(released, ids...)
				for _, st := range started {
					flush = flush || slices.Contains(resp.Release, st.id)
				}
			}
			for _, a := range resp.Assignments {
				if _, dup := runningJobs[a.AttemptID]; dup {
					continue
				}
				if draining {
					results = append(results, api.AttemptResult{AttemptID: a.AttemptID, State: api.AttemptError, Error: "worker shutting down"})
					continue
				}
				backlog = append(backlog, a)
			}
		}

		select {
		case ans := <-answers:
			if ans.partial {
				// Work before the acknowledgement of the poll's
				// results, which stays in flight.
				backoff = 0
				inFlight[ans.seq].answered = true
				take(ans.resp)
				if ans.seq > unconfirmedSeq {
					unconfirmed = false // after its cancellations
				}
				continue
			}
			dropped, starts := inFlight[ans.seq].dropped, inFlight[ans.seq].starts
			delete(inFlight, ans.seq)
			if len(ans.req.Results) > 0 {
				unacked--
			}
			if ans.err != nil {
				// What the poll was to tell goes out with the next one.
				evicted = append(ans.req.Evicted, evicted...)
				started = append(starts, started...)
				released = append(ans.req.Released, released...)
				if ans.req.Holds != nil {
					holdsSent = false
				}
			}
			if ans.err != nil && dropped {
				continue // replaced by a newer poll
			}
			if ans.err != nil {
				// Results not acknowledged go out again.
				results = append(ans.req.Results, results...)
				reportsFail()
				if errors.Is(ans.err, api.ErrUnknownWorker) {
					w.log.Info("coordinator no longer knows this worker; registering again")
					workerID = ""
					continue
				}
				if errors.Is(ans.err, api.ErrUnauthorized) {
					w.giveBack(runningJobs, stop)
					return fmt.Errorf("worker: poll: %w", ans.err)
				}
				// Back off even if another poll is still in flight: a
				// waiting poll may hang on a broken link for long while
				// new requests fail at once, and resending at once
				// would spin (thousands of requests a second).
				if retryAt == nil {
					fail(ans.err)
				}
				continue
			}
			backoff = 0
			if !ans.taken {
				take(ans.resp)
			}
			for _, r := range ans.req.Results {
				if slices.Contains(ans.resp.ResultsLater, r.AttemptID) {
					laterResults = append(laterResults, r)
					continue
				}
				delete(unreported, r.AttemptID)
			}
			later = append(later, startsLater(starts, ans.resp.StartsLater, w.log)...)
			if ans.seq > unconfirmedSeq {
				unconfirmed = false // after its cancellations
			}
		case res := <-finished:
			w.log.WithFields(logrus.Fields{"attempt": res.AttemptID, "state": res.State, "ms": res.DurationMS}).Debug("job finished")
			r := runningJobs[res.AttemptID]
			delete(runningJobs, res.AttemptID)
			w.m.running.Dec()
			if r != nil && !r.forgotten {
				if len(results) == 0 && len(started) == 0 {
					firstReport = time.Now()
				}
				results = append(results, res)
				unreported[res.AttemptID] = r.run
			}
			if r != nil {
				if len(localDone) >= maxLocalResults {
					clear(localDone)
				}
				localDone[res.AttemptID] = localResult{ok: res.State == api.AttemptSucceeded && !r.forgotten, jobID: r.jobID, digest: res.OutputDigest}
			}
		case <-reportAt:
			reportTimer, reportAt = nil, nil
		case <-retryAt:
			retryAt = nil
		case <-drainTimer:
			drainTimer, drainOver = nil, true
			w.log.WithField("jobs", len(runningJobs)).Warn("drain timeout: giving running jobs back to the coordinator")
			for _, r := range runningJobs {
				r.cancel(errShutdown)
			}
		case <-ctx.Done():
			if !draining {
				draining = true
				w.log.WithField("jobs", len(runningJobs)).Info("shutting down: finishing running jobs")
				for _, a := range backlog {
					results = append(results, api.AttemptResult{AttemptID: a.AttemptID, State: api.AttemptError, Error: "worker shutting down"})
				}
				backlog = nil
				if w.opts.DrainTimeout < 0 {
					drainOver = true
					for _, r := range runningJobs {
						r.cancel(errShutdown)
					}
				} else {
					drainTimer = time.After(w.opts.DrainTimeout)
				}
				ctx = context.Background() // stop selecting on Done
			}
		}
	}
}

// held reports whether an assignment is one the coordinator has not
// committed: prefetched, or pipelined behind attempts of this worker
// (pending on the coordinator). A restarted coordinator has forgotten
// such assignments, so the worker starts none of them while its reports
// fail, and drops them when it registers again.
func held(a api.Assignment) bool {
	return a.Prefetched || len(a.After) > 0
}

// release answers a release request of the coordinator
// (api.PollResponse.Release): it drops from backlog the prefetched
// assignments that ids names, which the worker has not started and now
// never will, and returns the backlog left and their IDs, for
// api.PollRequest.Released. Those not in backlog are not released: the
// worker started them (their starts, reported as usual, answer the
// request) or no longer holds them.
func release(backlog []api.Assignment, ids []string) (kept []api.Assignment, released []string) {
	kept = backlog[:0]
	for _, a := range backlog {
		if a.Prefetched && slices.Contains(ids, a.AttemptID) {
			released = append(released, a.AttemptID)
			continue
		}
		kept = append(kept, a)
	}
	clear(backlog[len(kept):])
	return kept, released
}

// startedAt is a prefetched attempt the worker started, for
// api.PollRequest.Started.
type startedAt struct {
	id      string
	at      time.Time
	build   int64  // the assignment's build
	job     string // and job
	session string // the worker ID it was assigned to
}

// forgottenRuns returns started with the runs of an ended session
// added that it does not hold yet (nor later does): those running and
// those whose results are not acknowledged. The next session is told
// all of them: the coordinator ignores those it knows, and records the
// others (prefetched attempts whose start it never heard of, or any
// attempt a crashed coordinator handed out without recording it) as
// abandoned attempts of their jobs, so that every run is in the
// history.
func forgottenRuns(started, later []startedAt, running map[string]*running, unreported map[string]startedAt) []startedAt {
	have := map[string]bool{}
	for _, st := range started {
		have[st.id] = true
	}
	for _, st := range later {
		have[st.id] = true
	}
	add := func(st startedAt) {
		if !have[st.id] {
			have[st.id] = true
			started = append(started, st)
		}
	}
	for _, r := range running {
		add(r.run)
	}
	for _, st := range unreported {
		add(st)
	}
	return started
}

// maxStartAge bounds how long the worker keeps sending a start the
// coordinator could not record yet (api.PollResponse.StartsLater): a
// replica claims a dead replica's build once its lease expired (15s by
// default) and it has spare slots, which may take a while under load.
const maxStartAge = 10 * time.Minute

// startsLater returns the starts of sent that the coordinator asked to
// have again later (ids), except those older than maxStartAge, which
// are given up with a warning.
func startsLater(sent []startedAt, ids []string, log logrus.FieldLogger) []startedAt {
	var out []startedAt
	for _, st := range sent {
		if !slices.Contains(ids, st.id) {
			continue
		}
		if time.Since(st.at) > maxStartAge {
			log.WithFields(logrus.Fields{"attempt": st.id, "build": st.build}).Warn("giving up reporting a prefetched attempt's start: no coordinator records it")
			continue
		}
		out = append(out, st)
	}
	return out
}

// waitSlack is how long past its wait a poll that carries no results
// may stay unanswered before the worker takes its link as broken and
// polls again. The coordinator answers such a poll when its wait ends;
// a link that drops packets silently (a lost NAT mapping, a dead peer)
// would otherwise be noticed only at the general timeout, 30s later,
// slots idle meanwhile and the session expired.
const waitSlack = 5 * time.Second

// pollTimeout bounds a poll of wait pollWait: one carrying results may
// wait for them to be stored (a database outage retries until it ends),
// others are answered within their wait.
func pollTimeout(pollWait time.Duration, results bool) time.Duration {
	if results || pollWait <= 0 {
		return pollWait + 30*time.Second
	}
	return pollWait + waitSlack
}

// giveBack cancels every running job (used when the worker must stop at
// once).
func (w *Worker) giveBack(jobs map[string]*running, stop context.CancelFunc) {
	for _, r := range jobs {
		r.cancel(errShutdown)
	}
	stop()
}
