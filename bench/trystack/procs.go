package trystack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tryd-ci/tryd/internal/testcluster"
	"github.com/tryd-ci/tryd/internal/testenv"
)

// Proc is a tryd process the stack started (internal/testcluster's).
type Proc = testcluster.Proc

// stopTimeout is how long Close lets each process exit after SIGTERM
// before it kills its group.
const stopTimeout = 10 * time.Second

// StartProc runs "tryd args..." as process name, in its own process
// group, at log level warn, its standard error copied to
// Options.ProcLog. If addr is set, the process serves there and StartProc
// waits for its /healthz (see testcluster.Proc.WaitHealthy). Close stops
// it.
func (s *Stack) StartProc(ctx context.Context, name, addr string, args ...string) (*Proc, error) {
	url := ""
	if addr != "" {
		url = "http://" + addr
	}
	p, err := testcluster.StartProc(testcluster.ProcOptions{Binary: s.opts.Tryd, Name: name, Args: args,
		Env: []string{"TRYD_LOG_LEVEL=warn"}, Log: s.opts.ProcLog, URL: url})
	if err != nil {
		return nil, fmt.Errorf("trystack: %w", err)
	}
	s.closers = append(s.closers, func() { _ = p.Stop(stopTimeout) })
	if url == "" {
		return p, nil
	}
	if err := p.WaitHealthy(ctx); err != nil {
		return nil, fmt.Errorf("trystack: %w", err)
	}
	return p, nil
}

// holdAddr holds a loopback port until Close (see testenv.HoldPort), so
// that no other server or connection takes it before the process that
// will serve there listens, or while it restarts.
func (s *Stack) holdAddr() (string, error) {
	addr, release, err := testenv.HoldPort()
	if err != nil {
		return "", fmt.Errorf("trystack: %w", err)
	}
	s.closers = append(s.closers, release)
	return addr, nil
}

// startProcesses runs gitmirror, then the coordinator and the workers
// as a testcluster cluster, as tryd processes.
func (s *Stack) startProcesses(ctx context.Context) error {
	dir := filepath.Join(s.opts.Dir, "procs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	gmCfg := filepath.Join(dir, "gitmirror.yaml")
	if err := os.WriteFile(gmCfg, []byte(fmt.Sprintf("repos:\n  - name: %s\n    url: %q\n", s.Project, s.Gerrit.GitURL(s.Project))), 0o644); err != nil {
		return err
	}
	addr, err := s.holdAddr()
	if err != nil {
		return err
	}
	gm, err := s.StartProc(ctx, "gitmirror", addr, "gitmirror", "--config", gmCfg, "--data-dir", filepath.Join(dir, "gitmirror"),
		"--listen", addr, "--pubsubhelper", "off", "--poll", "-1s")
	if err != nil {
		return err
	}
	s.GitmirrorURL = gm.URL
	var workers []testcluster.WorkerOptions
	for range min(s.opts.Workers, len(testcluster.WorkerNames)) {
		workers = append(workers, testcluster.WorkerOptions{Slots: s.opts.WorkerSlots, Labels: s.opts.WorkerLabels})
	}
	c, err := testcluster.Launch(ctx, testcluster.Options{Tryd: s.opts.Tryd, Dir: dir, Log: s.opts.ProcLog, LogLevel: "warn",
		CoordinatorYAML: "  heartbeat_timeout: 5s\n", Workers: workers, StopTimeout: stopTimeout})
	if err != nil {
		return fmt.Errorf("trystack: %w", err)
	}
	s.closers = append(s.closers, c.Close)
	s.CoordinatorURL, s.ClientToken, s.ClientTokenFile = c.URL, c.ClientToken, c.ClientTokenFile()
	s.WorkerTokens = c.WorkerTokens
	return nil
}

// WriteTrybotConfig writes a tryd.yaml for a trybot against the stack
// (its Gerrit project with buildersYAML's builders, data_dir dir/data and
// the URLs of maintnerd, the coordinator and gitmirror, as a trybot
// started from the configuration alone needs them) and returns its path.
func (s *Stack) WriteTrybotConfig(dir, buildersYAML string) (string, error) {
	cfg := fmt.Sprintf(`data_dir: %q
gerrit:
  - name: sim
    url: %q
    user: %s
    password: file:%s
repos:
  - name: %s
    gerrit: sim
    project: %s
builders:
%s
trybot:
  public_url: %s
maintnerd:
  url: %q
coordinator:
  url: %q
gitmirror:
  url: %q
`, filepath.Join(dir, "data"), s.Gerrit.URL(), s.BotUser, s.BotPasswordFile, s.Project, s.Project, buildersYAML, s.opts.PublicURL,
		s.MaintnerdURL, s.CoordinatorURL, s.GitmirrorURL)
	path := filepath.Join(dir, "tryd.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return "", fmt.Errorf("trystack: %w", err)
	}
	return path, nil
}

// StartTrybotProcess runs "tryd trybot" against the stack.
func (s *Stack) StartTrybotProcess(ctx context.Context, dir, buildersYAML string, extra ...string) (*Proc, error) {
	cfg, err := s.WriteTrybotConfig(dir, buildersYAML)
	if err != nil {
		return nil, err
	}
	addr, err := s.holdAddr()
	if err != nil {
		return nil, err
	}
	args := append([]string{"trybot", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--listen", addr,
		"--maintnerd", s.MaintnerdURL, "--coordinator", s.CoordinatorURL, "--coordinator-token-file", s.ClientTokenFile,
		"--gitmirror", s.GitmirrorURL}, extra...)
	return s.StartProc(ctx, "trybot", addr, args...)
}
