package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
	"github.com/tryd-ci/tryd/worker/artifact"
	"github.com/tryd-ci/tryd/worker/proc"
	"github.com/tryd-ci/tryd/worker/source"
)

// infraError marks a failure of the worker rather than of the job
// (source or artifact fetch, upload, disk): reported as state "error", so
// that the coordinator retries the job elsewhere.
type infraError struct{ err error }

func (e *infraError) Error() string { return e.err.Error() }
func (e *infraError) Unwrap() error { return e.err }

func infra(format string, args ...any) error {
	return &infraError{fmt.Errorf(format, args...)}
}

// Limits on an uploaded source's manifest, checked again on the worker.
const (
	maxManifestBytes = 64 << 20
	maxSourceBytes   = 8 << 30
)

// run executes one assignment from start to finish and returns the result
// to report. ctx is cancelled when the coordinator cancels the attempt or
// the worker gives it back; the job's own timeout is applied here.
//
// The job's directories are cleaned by the returned function, which the
// caller runs after reporting the result, so that cleaning is off the
// critical path from one job of a chain to the next.
func (w *Worker) run(ctx context.Context, a api.Assignment) (api.AttemptResult, func()) {
	res := api.AttemptResult{AttemptID: a.AttemptID}
	start := time.Now()
	timeout := time.Duration(a.TimeoutMS) * time.Millisecond
	if timeout <= 0 {
		timeout = w.opts.DefaultTimeout
	}
	jobCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	logs := newLogStream(func(ctx context.Context, off int64, chunk []byte) (int64, error) {
		return w.opts.Client.AppendLog(ctx, a.AttemptID, off, chunk)
	}, a.MaxLogBytes, w.opts.LogChunkBytes, w.opts.LogFlushInterval, cancel)

	var cleanup []func()
	digest, size, err := w.execute(jobCtx, a, logs, &cleanup)
	res.DurationMS = time.Since(start).Milliseconds()
	var ee *proc.ExitError
	var ie *infraError
	switch {
	case err == nil:
		res.State, res.OutputDigest, res.OutputSize = api.AttemptSucceeded, digest, size
		zero := 0
		res.ExitCode = &zero
	case errors.Is(err, proc.ErrTimeout) || errors.Is(jobCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		res.State, res.Error = api.AttemptTimedOut, fmt.Sprintf("timed out after %v", timeout)
		logs.Note("job timed out after %v; its processes were killed", timeout)
	case ctx.Err() != nil:
		res.State, res.Error = api.AttemptError, "worker gave the job back: "+context.Cause(ctx).Error()
	case errors.As(err, &ee):
		res.State, res.Error = api.AttemptFailed, err.Error()
		code := ee.Code
		res.ExitCode = &code
	case errors.As(err, &ie):
		res.State, res.Error = api.AttemptError, err.Error()
		logs.Note("worker error: %v", err)
	default:
		res.State, res.Error = api.AttemptFailed, err.Error()
		logs.Note("%v", err)
	}
	logs.Close(context.WithoutCancel(ctx), 10*time.Second)
	res.LogTruncated = logs.Truncated()
	return res, func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}
}

// execute prepares the job's directories, runs its commands and uploads
// its outputs, returning the output archive's digest and size. It appends
// to cleanup what must be undone once the job is over.
func (w *Worker) execute(ctx context.Context, a api.Assignment, logs *logStream, cleanup *[]func()) (string, int64, error) {
	jobDir, err := w.takeJobDir()
	if err != nil {
		return "", 0, err
	}
	*cleanup = append(*cleanup, func() { w.releaseJobDir(jobDir) })
	dirs := graph.Dirs{Output: filepath.Join(jobDir, "out"), Deps: map[string]string{}}
	tmp := filepath.Join(jobDir, "tmp")

	if a.Source != nil {
		dirs.Source = filepath.Join(jobDir, "src")
		release, err := w.prepareSource(ctx, *a.Source, &a.Job, dirs.Source)
		if err != nil {
			return "", 0, err
		}
		*cleanup = append(*cleanup, release)
	}
	if err := w.fetchDeps(ctx, a.Deps, filepath.Join(jobDir, "deps"), dirs.Deps); err != nil {
		return "", 0, err
	}

	for i, c := range a.Job.Commands {
		if err := ctx.Err(); err != nil {
			return "", 0, err
		}
		if c.WriteFile != nil {
			if err := writeFile(jobDir, c.WriteFile); err != nil {
				return "", 0, fmt.Errorf("command %d: %w", i+1, err)
			}
			continue
		}
		argv, env, dir, err := graph.ExpandCommand(c, dirs)
		if err != nil {
			return "", 0, fmt.Errorf("command %d: %w", i+1, err)
		}
		if !within(jobDir, dir) {
			return "", 0, fmt.Errorf("command %d: working directory %s is outside the job's directories", i+1, dir)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", 0, fmt.Errorf("command %d: working directory: %w", i+1, err)
		}
		fullEnv := append(append(append([]string(nil), w.opts.BaseEnv...), "TMPDIR="+tmp, runVar+"="+w.runID), env...)
		err = proc.Run(ctx, proc.Spec{Argv: argv, Env: fullEnv, Dir: dir, Output: logs, Stdin: w.devNull, Paths: w.paths})
		if err != nil {
			var ee *proc.ExitError
			if errors.As(err, &ee) {
				logs.Note("command %d (%s) failed: %v", i+1, argv[0], ee)
			}
			return "", 0, err
		}
	}
	return w.uploadOutputs(ctx, dirs.Output)
}

// takeJobDir returns a clean job directory holding empty out/ and tmp/.
// Directories are reused from job to job (after release has made them
// clean again), because on a busy disk creating and removing directories
// costs more than a trivial job.
func (w *Worker) takeJobDir() (string, error) {
	select {
	case d := <-w.jobDirs:
		return d, nil
	default:
	}
	d, err := os.MkdirTemp(w.jobsDir, "job-")
	if err != nil {
		return "", infra("worker: job directory: %w", err)
	}
	for _, sub := range jobSubdirs {
		if err := os.Mkdir(filepath.Join(d, sub), 0o755); err != nil {
			os.RemoveAll(d)
			return "", infra("worker: job directory: %w", err)
		}
	}
	return d, nil
}

// releaseJobDir cleans a job directory for the next job (removing
// everything but empty out/ and tmp/) and returns it to the pool, or
// removes it when it cannot be cleaned or the pool is full.
func (w *Worker) releaseJobDir(d string) {
	if cleanJobDir(d) == nil {
		select {
		case w.jobDirs <- d:
			return
		default:
		}
	}
	if err := os.RemoveAll(d); err != nil {
		w.log.WithError(err).WithField("dir", d).Warn("cannot remove job directory")
	}
}

// jobSubdirs are the directories every job directory holds, empty, when
// a job starts.
var jobSubdirs = []string{"out", "tmp", "deps"}

// keptDepDirs bounds the empty dependency directories (deps/0, deps/1,
// ...) a cleaned job directory keeps for the next job: on a busy disk,
// creating and removing a directory per dependency costs more than a
// trivial job, and most jobs have a few dependencies.
const keptDepDirs = 16

// cleanJobDir leaves d with exactly three empty directories, out, tmp and
// deps, except that deps may keep up to keptDepDirs empty dependency
// directories, touching the disk only where the job left something.
func cleanJobDir(d string) error {
	if jobDirClean(d) {
		return nil // what a job that writes nothing leaves
	}
	ents, err := os.ReadDir(d)
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(d, e.Name())
		if e.IsDir() && e.Type()&os.ModeSymlink == 0 {
			switch e.Name() {
			case "out", "tmp":
				if emptyDir(p) {
					continue
				}
			case "deps":
				if cleanDepsDir(p) == nil {
					continue
				}
			}
			if slices.Contains(jobSubdirs, e.Name()) {
				if err := os.RemoveAll(p); err != nil {
					return err
				}
				if err := os.Mkdir(p, 0o755); err != nil {
					return err
				}
				continue
			}
		}
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	for _, sub := range jobSubdirs {
		if st, err := os.Lstat(filepath.Join(d, sub)); err != nil || !st.IsDir() {
			if err := os.Mkdir(filepath.Join(d, sub), 0o755); err != nil {
				return err
			}
		}
	}
	return nil
}

// cleanDepsDir removes everything in a job's deps directory but empty
// directories named by a dependency's index below keptDepDirs.
func cleanDepsDir(p string) error {
	ents, err := os.ReadDir(p)
	if err != nil {
		return err
	}
	for _, e := range ents {
		q := filepath.Join(p, e.Name())
		if n, err := strconv.Atoi(e.Name()); err == nil && n >= 0 && n < keptDepDirs && strconv.Itoa(n) == e.Name() &&
			e.IsDir() && e.Type()&os.ModeSymlink == 0 && emptyDir(q) {
			continue
		}
		if err := os.RemoveAll(q); err != nil {
			return err
		}
	}
	return nil
}

// within reports whether p is dir or below it.
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && filepath.IsLocal(rel)
}

// writeFile performs a write_file command in the job's out/ directory
// through an os.Root of the job directory, so that neither the path nor a
// symlink planted by an earlier command (even in place of out/ itself)
// can place the file outside.
func writeFile(jobDir string, wf *graph.WriteFile) error {
	p := filepath.FromSlash(wf.Path)
	if !filepath.IsLocal(p) {
		return fmt.Errorf("write_file: path %q escapes the output directory", wf.Path)
	}
	jobRoot, err := os.OpenRoot(jobDir)
	if err != nil {
		return fmt.Errorf("write_file: %w", err)
	}
	defer jobRoot.Close()
	root, err := jobRoot.OpenRoot("out")
	if err != nil {
		return fmt.Errorf("write_file: output directory: %w", err)
	}
	defer root.Close()
	if d := filepath.Dir(p); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("write_file %s: %w", wf.Path, err)
		}
	}
	mode := os.FileMode(0o644)
	if wf.Executable {
		mode = 0o755
	}
	f, err := root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("write_file %s: %w", wf.Path, err)
	}
	_, err = io.WriteString(f, wf.Content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && wf.Executable {
		err = root.Chmod(p, 0o755)
	}
	if err != nil {
		return fmt.Errorf("write_file %s: %w", wf.Path, err)
	}
	return nil
}

// prepareSource fills dst with the job's source and returns a function
// that releases it. A job with source_mode inputs gets only its inputs,
// each verified against the source first (see source.CheckoutInputs and
// source.SelectFiles): its result is cached under an ID that covers only
// them, so it must neither read anything else nor run on content its
// digests do not describe. A refused or mismatched input fails the job
// for good; another worker would find the same. Every such job is
// treated alike, trybot/goplan's included (it lists every file its jobs
// may read).
func (w *Worker) prepareSource(ctx context.Context, src api.SourceRef, job *graph.Job, dst string) (func(), error) {
	var inputs []graph.Input
	if job.Mode() == graph.SourceInputs {
		inputs = job.Inputs
		if len(inputs) == 0 {
			return nil, fmt.Errorf("worker: job %q has source_mode inputs but no inputs", job.Name)
		}
	}
	switch {
	case src.Repo != "" && src.Manifest == "":
		var release func()
		var err error
		if inputs != nil {
			_, release, err = w.sources.CheckoutInputs(ctx, src.Repo, src.Revision, dst, inputs)
		} else {
			_, release, err = w.sources.Checkout(ctx, src.Repo, src.Revision, dst)
		}
		switch {
		case err == nil:
		case errors.Is(err, source.ErrInputMismatch) || errors.Is(err, source.ErrBadInput):
			return nil, fmt.Errorf("worker: the job's inputs do not match its source: %w", err)
		case !errors.Is(err, source.ErrUnavailable) && (errors.Is(err, source.ErrNotFound) || errors.Is(err, source.ErrBadRevision)):
			// The revision or repository does not exist, or is refused:
			// the job's own fault, which another attempt elsewhere
			// would only repeat. Transient failures were retried by
			// worker/source already; when those retries ran out
			// (ErrUnavailable, whose cause may be a lookup that found
			// nothing because the fetch failed), and for local
			// failures, the fault is the worker's: retried elsewhere.
			return nil, fmt.Errorf("worker: cannot check out the job's source: %w", err)
		default:
			return nil, infra("worker: source: %w", err)
		}
		return release, nil
	case src.Manifest != "" && src.Repo == "":
		if err := w.writeUploaded(ctx, src.Manifest, inputs, dst); err != nil {
			return nil, err
		}
		return func() {}, nil
	}
	return nil, fmt.Errorf("worker: assignment source must have either repo or manifest")
}

// writeUploaded writes the files of an uploaded source's manifest into
// dst, each fetched by digest (through the local cache); only those
// under inputs when inputs is not nil (see source.SelectFiles).
func (w *Worker) writeUploaded(ctx context.Context, manifest string, inputs []graph.Input, dst string) error {
	f, err := w.fetch(ctx, manifest)
	if err != nil {
		return infra("worker: source manifest: %w", err)
	}
	files, err := parseManifest(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("worker: source manifest %s: %w", manifest, err)
	}
	if inputs != nil {
		if files, err = source.SelectFiles(files, inputs); err != nil {
			return fmt.Errorf("worker: the job's inputs do not match its uploaded source %s: %w", manifest, err)
		}
	}
	if err := os.Mkdir(dst, 0o755); err != nil {
		return infra("worker: source: %w", err)
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return infra("worker: source: %w", err)
	}
	defer root.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, file := range files {
		g.Go(func() error {
			p := filepath.FromSlash(file.Path)
			if d := filepath.Dir(p); d != "." {
				if err := root.MkdirAll(d, 0o755); err != nil {
					return fmt.Errorf("worker: source file %s: %w", file.Path, err)
				}
			}
			src, err := w.fetch(gctx, file.Digest)
			if err != nil {
				return infra("worker: source file %s: %w", file.Path, err)
			}
			defer src.Close()
			mode := os.FileMode(0o644)
			if file.Executable {
				mode = 0o755
			}
			out, err := root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			if err != nil {
				return fmt.Errorf("worker: source file %s: %w", file.Path, err)
			}
			_, err = io.Copy(out, src)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return infra("worker: source file %s: %w", file.Path, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// parseManifest decodes an uploaded source's manifest (a JSON array of
// graph.File) and checks every entry: a clean relative path, a valid
// digest, a sane size, no path twice, and totals within limits.
func parseManifest(r io.Reader) ([]graph.File, error) {
	var files []graph.File
	dec := json.NewDecoder(io.LimitReader(r, maxManifestBytes))
	if err := dec.Decode(&files); err != nil {
		return nil, err
	}
	if len(files) > graph.MaxFiles {
		return nil, fmt.Errorf("%d files, more than %d", len(files), graph.MaxFiles)
	}
	var total int64
	seen := make(map[string]bool, len(files))
	for _, file := range files {
		p := file.Path
		if p == "" || len(p) > graph.MaxNameLen || strings.ContainsAny(p, "\\\x00") || path.Clean(p) != p || !filepath.IsLocal(filepath.FromSlash(p)) {
			return nil, fmt.Errorf("bad path %q", p)
		}
		if !artifact.ValidDigest(file.Digest) || file.Size < 0 || file.Size > maxSourceBytes {
			return nil, fmt.Errorf("bad entry for %q", p)
		}
		if seen[p] {
			return nil, fmt.Errorf("path %q listed twice", p)
		}
		seen[p] = true
		total += file.Size
	}
	if total > maxSourceBytes {
		return nil, fmt.Errorf("%d bytes of source, more than %d", total, int64(maxSourceBytes))
	}
	return files, nil
}

// fetchDeps unpacks each dependency's output archive into a directory of
// its own under depsDir (deps/0, deps/1, ... in the order of deps) and
// records it in dirs.
func (w *Worker) fetchDeps(ctx context.Context, deps []api.DepOutput, depsDir string, dirs map[string]string) error {
	for i, d := range deps {
		if !graph.IsID(d.JobID) || !artifact.ValidDigest(d.Digest) {
			return fmt.Errorf("worker: bad dependency %q (digest %q)", d.JobID, d.Digest)
		}
		if _, dup := dirs[d.JobID]; dup {
			return fmt.Errorf("worker: dependency %q listed twice", d.JobID)
		}
		dir := filepath.Join(depsDir, strconv.Itoa(i))
		// A reused job directory may hold this one already, empty (see
		// cleanJobDir).
		if err := os.Mkdir(dir, 0o755); err != nil && !(errors.Is(err, os.ErrExist) && i < keptDepDirs) {
			return infra("worker: deps directory: %w", err)
		}
		dirs[d.JobID] = dir
		if d.Digest == artifact.EmptyDigest {
			continue
		}
		f, err := w.fetch(ctx, d.Digest)
		if err != nil {
			return infra("worker: output of dependency %s: %w", d.JobID, err)
		}
		err = artifact.Unpack(f, dir, artifact.Limits{})
		f.Close()
		if err != nil {
			// A hostile or corrupt archive: the job cannot run, and
			// retrying elsewhere would not help.
			return fmt.Errorf("worker: output of dependency %s: %w", d.JobID, err)
		}
	}
	return nil
}

// fetch returns an artifact from the local cache, downloading it from the
// coordinator's store if needed.
func (w *Worker) fetch(ctx context.Context, digest string) (*os.File, error) {
	return w.cache.Fetch(ctx, digest, func(ctx context.Context, digest string, dst io.Writer) error {
		return w.retry(ctx, func() error {
			rc, err := w.opts.Client.GetArtifact(ctx, digest)
			if err != nil {
				return err
			}
			defer rc.Close()
			if s, ok := dst.(io.Seeker); ok {
				// A retry starts the file over.
				if _, err := s.Seek(0, io.SeekStart); err != nil {
					return err
				}
			}
			_, err = io.Copy(dst, rc)
			return err
		})
	})
}

// retryFor bounds how long transfers to and from the coordinator are
// retried while it is unreachable (e.g. restarting).
const retryFor = 30 * time.Second

// retry runs f until it succeeds, fails with an error the coordinator
// answered (an api.Error: retrying would not help), ctx ends, or
// retryFor has passed, backing off between attempts.
func (w *Worker) retry(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(retryFor)
	delay := w.opts.MinBackoff
	for {
		err := f()
		var ae *api.Error
		if err == nil || errors.As(err, &ae) && !errors.Is(err, api.ErrUnavailable) || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		w.log.WithError(err).WithField("retry_in", delay).Debug("transfer failed; retrying")
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(delay*2, w.opts.MaxBackoff)
	}
}

// spillBytes is how much of an output archive is kept in memory before
// it is written to a temporary file.
const spillBytes = 1 << 20

// spill is an io.Writer that keeps up to spillBytes in memory and moves
// everything to a temporary file of the cache beyond that.
type spill struct {
	cache *artifact.Cache
	buf   []byte
	f     *os.File
	err   error // a failure to write the temporary file (the worker's fault)
}

func (s *spill) Write(p []byte) (int, error) {
	if s.f == nil && len(s.buf)+len(p) <= spillBytes {
		s.buf = append(s.buf, p...)
		return len(p), nil
	}
	if s.f == nil {
		f, err := s.cache.TempFile()
		if err != nil {
			s.err = err
			return 0, err
		}
		s.f = f
		if _, err := f.Write(s.buf); err != nil {
			s.err = err
			return 0, err
		}
		s.buf = nil
	}
	n, err := s.f.Write(p)
	if err != nil {
		s.err = err
	}
	return n, err
}

// reader returns the archive's bytes from the start.
func (s *spill) reader() (io.ReadSeeker, error) {
	if s.f == nil {
		return bytes.NewReader(s.buf), nil
	}
	_, err := s.f.Seek(0, io.SeekStart)
	return s.f, err
}

// keep moves the archive into the local cache under digest.
func (s *spill) keep(digest string) error {
	if s.f == nil {
		f, err := s.cache.TempFile()
		if err != nil {
			return err
		}
		s.f = f
		if _, err := f.Write(s.buf); err != nil {
			return err
		}
	}
	if err := s.f.Close(); err != nil {
		return err
	}
	name := s.f.Name()
	s.f = nil
	return s.cache.Add(digest, name)
}

func (s *spill) discard() {
	if s.f != nil {
		s.f.Close()
		os.Remove(s.f.Name())
	}
}

// uploadOutputs packs the output directory, uploads the archive unless the
// store is known to hold it, and keeps it in the local cache (dependents
// scheduled here for locality find it).
//
// An output directory left empty (most jobs of a chain of checks) is
// recognised without packing once the store is known to hold the empty
// archive: it is the same archive every time.
func (w *Worker) uploadOutputs(ctx context.Context, outDir string) (string, int64, error) {
	if w.uploaded(artifact.EmptyDigest) {
		// emptyDir refuses a symlink, as Pack refuses an output
		// directory replaced by one.
		if emptyDir(outDir) {
			return artifact.EmptyDigest, artifact.EmptySize, nil
		}
	}
	sp := &spill{cache: w.cache}
	defer sp.discard()
	p, err := artifact.Pack(outDir, sp, artifact.Limits{MaxBytes: w.opts.MaxOutputBytes})
	if sp.err != nil {
		return "", 0, infra("worker: outputs: %w", sp.err)
	}
	if err != nil {
		return "", 0, err
	}
	if w.uploaded(p.Digest) {
		return p.Digest, p.Size, nil
	}
	err = w.retry(ctx, func() error {
		r, err := sp.reader()
		if err != nil {
			return err
		}
		return w.opts.Client.PutArtifact(ctx, p.Digest, r, p.Size)
	})
	if err != nil {
		return "", 0, infra("worker: upload outputs: %w", err)
	}
	w.markUploaded(p.Digest)
	if err := sp.keep(p.Digest); err != nil {
		w.log.WithError(err).Warn("cannot keep outputs in the local cache")
	}
	return p.Digest, p.Size, nil
}
