package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/tryd-ci/tryd/maintner"
	"github.com/tryd-ci/tryd/maintner/corpusgen"
)

const corpusUsage = `Corpus inspects, follows and generates mutation logs.

Subcommands:

  gen    --out DIR --size 1GiB [--seed N]   write a synthetic log shaped like a
                                           real project's history
  stats  [--dir DIR | --server URL]         load a log and summarize it
  ls     [--dir DIR | --server URL] WHAT    list repos, issues OWNER/REPO,
                                           projects, changes PROJECT (filters
                                           as flags, see "tryd corpus ls --help")
  show   [--dir DIR | --server URL] THING   show OWNER/REPO#N or PROJECT~CL
  tail   --server URL | --dir DIR           print mutations as they are appended

Without --server, ls/show/stats load the log in --dir (default: the
maintnerd log under the data directory) into memory.`

func runCorpus(ctx context.Context, a *app, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fs, cf := a.flags("corpus", "<gen|stats|ls|show|tail> [flags]", corpusUsage)
		if err := a.parse(fs, cf, args); err != nil {
			return err
		}
		fs.Usage()
		return errUsage
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "gen":
		return corpusGen(ctx, a, rest)
	case "stats":
		return corpusStats(ctx, a, rest)
	case "ls":
		return corpusLs(ctx, a, rest)
	case "show":
		return corpusShow(ctx, a, rest)
	case "tail":
		return corpusTail(ctx, a, rest)
	}
	fmt.Fprintf(a.stderr, "tryd corpus: unknown subcommand %q\n\n%s\n", sub, corpusUsage)
	return errUsage
}

// logDir is where maintnerd keeps its disk log under the data directory.
func (a *app) logDir() string { return filepath.Join(a.dataDir, "maintner", "log") }

func corpusGen(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("corpus gen", "--out DIR --size SIZE [flags]", `Gen writes a synthetic mutation log shaped like a real project's history:
GitHub issues with many comments and events, pull requests with reviews,
statuses and check runs, and Gerrit changes with several patch sets, votes
and messages (NoteDb meta commits). The output directory must be empty;
segments are sealed files as a disk store writes them. Progress goes to
standard error.`)
	out := fs.String("out", "", "output directory (required; must be empty or absent)")
	sizeFlag := fs.String("size", "64MiB", "approximate log size: bytes or with a unit (KiB, MiB, GiB, KB, MB, GB)")
	seed := fs.Uint64("seed", 1, "random seed; the same seed and size give the same log")
	share := fs.Float64("gerrit-share", 0.5, "fraction of activity that is Gerrit (0 < share < 1)")
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	if *out == "" {
		fmt.Fprintln(a.stderr, "tryd corpus gen: --out is required")
		return errUsage
	}
	size, err := parseSize(*sizeFlag)
	if err != nil {
		fmt.Fprintf(a.stderr, "tryd corpus gen: --size: %v\n", err)
		return errUsage
	}
	w, err := corpusgen.NewDirWriter(*out)
	if err != nil {
		return err
	}
	start := time.Now()
	progress := func(done int64) {
		fmt.Fprintf(a.stderr, "\rgen: %s / %s (%d%%)", humanBytes(done), humanBytes(size), min(100, done*100/size))
	}
	if err := corpusgen.Generate(ctx, corpusgen.Options{Size: size, Seed: *seed, GerritShare: *share, Progress: progress}, w.Write); err != nil {
		return err
	}
	files, err := w.Close()
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "\n")
	fmt.Fprintf(a.stdout, "wrote %d segments to %s in %s\n", len(files), *out, time.Since(start).Round(time.Millisecond))
	return nil
}

func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n <= 0 || n*float64(mult) > 1<<50 {
		return 0, fmt.Errorf("bad size %q (want e.g. 512MiB or 1GiB)", s)
	}
	return int64(n * float64(mult)), nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// sourceFlags are the flags of the reading subcommands: a local log
// directory or a maintnerd server.
type sourceFlags struct {
	dir       *string
	server    *string
	tokenFile *string
}

func addSourceFlags(fs *flag.FlagSet) sourceFlags {
	return sourceFlags{
		dir:       fs.String("dir", "", "log directory to load (default: <data-dir>/maintner/log)"),
		server:    fs.String("server", "", "maintnerd base URL (e.g. http://localhost:8081); queries it instead of loading a log"),
		tokenFile: fs.String("token-file", "", "with --server: file holding maintnerd's query API token (default: maintnerd.api_token from the config)"),
	}
}

// loadLocal loads the log directory into a new corpus, reporting progress
// on stderr.
func (a *app) loadLocal(ctx context.Context, dir string) (*maintner.Corpus, time.Duration, error) {
	if dir == "" {
		dir = a.logDir()
	}
	progress := func(done, total int) { fmt.Fprintf(a.stderr, "\rload: %d/%d segments", done, total) }
	c, err := maintner.New(maintner.Options{Logger: a.log, LoadWorkers: max(2, runtime.GOMAXPROCS(0)), LoadProgress: progress})
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	err = c.LoadDir(ctx, dir)
	fmt.Fprintln(a.stderr)
	if err != nil {
		return nil, 0, err
	}
	return c, time.Since(start), nil
}

func corpusStats(ctx context.Context, a *app, args []string) error {
	fs, cf := a.flags("corpus stats", "[--dir DIR | --server URL]", `Stats loads a log (or asks a maintnerd) and prints what the corpus holds as
JSON, with the local load time.`)
	src := addSourceFlags(fs)
	if err := a.parse(fs, cf, args); err != nil {
		return err
	}
	if *src.server != "" {
		cl, err := a.newQueryClient(src)
		if err != nil {
			return err
		}
		s, err := cl.Stats(ctx)
		if err != nil {
			return err
		}
		return writeJSON(a.stdout, s)
	}
	c, d, err := a.loadLocal(ctx, *src.dir)
	if err != nil {
		return err
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(a.stderr, "loaded in %s, heap %s\n", d.Round(time.Millisecond), humanBytes(int64(ms.HeapAlloc)))
	return writeJSON(a.stdout, c.Stats())
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func jsonDecode(r io.Reader, v any) error {
	return json.NewDecoder(io.LimitReader(r, 64<<20)).Decode(v)
}
