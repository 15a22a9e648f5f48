package trystack

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Proc is a tryd process.
type Proc struct {
	Name string
	URL  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Kill sends SIGKILL to the process group and waits for the process.
func (p *Proc) Kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits (SIGKILL after 10 s).
func (p *Proc) Stop() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.Kill()
	}
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// StartProc runs "tryd args..." and, if addr is set, waits for its
// /healthz on it.
func (s *Stack) StartProc(ctx context.Context, name, addr string, args ...string) (*Proc, error) {
	cmd := exec.Command(s.opts.Tryd, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), "TRYD_LOG_LEVEL=warn")
	out := s.opts.ProcLog
	if out == nil {
		out = io.Discard
	}
	cmd.Stderr = prefixWriter{name: name, w: out}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("trystack: start %s: %w", name, err)
	}
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	s.closers = append(s.closers, p.Stop)
	if addr == "" {
		return p, nil
	}
	p.URL = "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(p.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("trystack: %s exited", name)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("trystack: %s not healthy after 60s", name)
		}
	}
}

type prefixWriter struct {
	name string
	w    io.Writer
}

func (p prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			fmt.Fprintf(p.w, "%s: %s", p.name, line)
		}
	}
	return len(b), nil
}

// startProcesses runs gitmirror, the coordinator and the workers as tryd
// processes.
func (s *Stack) startProcesses(ctx context.Context) error {
	dir := filepath.Join(s.opts.Dir, "procs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	s.ClientToken = token()
	s.ClientTokenFile = filepath.Join(dir, "client-token")
	s.WorkerTokens = map[string]string{}
	var lines []string
	for i := 1; i <= 4; i++ {
		n := fmt.Sprintf("w%d", i)
		s.WorkerTokens[n] = token()
		lines = append(lines, n+" "+s.WorkerTokens[n])
		if err := os.WriteFile(filepath.Join(dir, n+".token"), []byte(s.WorkerTokens[n]+"\n"), 0o600); err != nil {
			return err
		}
	}
	if err := os.WriteFile(s.ClientTokenFile, []byte(s.ClientToken+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "worker-tokens"), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	gmCfg := filepath.Join(dir, "gitmirror.yaml")
	if err := os.WriteFile(gmCfg, []byte(fmt.Sprintf("repos:\n  - name: %s\n    url: %q\n", s.Project, s.Gerrit.GitURL(s.Project))), 0o644); err != nil {
		return err
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	gm, err := s.StartProc(ctx, "gitmirror", addr, "gitmirror", "--config", gmCfg, "--data-dir", filepath.Join(dir, "gitmirror"),
		"--listen", addr, "--pubsubhelper", "off", "--poll", "-1s")
	if err != nil {
		return err
	}
	s.GitmirrorURL = gm.URL
	if addr, err = freeAddr(); err != nil {
		return err
	}
	co, err := s.StartProc(ctx, "coordinator", addr, "coordinator", "--data-dir", filepath.Join(dir, "coordinator"), "--listen", addr,
		"--worker-tokens", filepath.Join(dir, "worker-tokens"), "--client-token-file", s.ClientTokenFile, "--heartbeat-timeout", "5s")
	if err != nil {
		return err
	}
	s.CoordinatorURL = co.URL
	for i := 1; i <= s.opts.Workers && i <= 4; i++ {
		n := fmt.Sprintf("w%d", i)
		args := []string{"worker", "--coordinator", s.CoordinatorURL, "--token-file", filepath.Join(dir, n+".token"),
			"--dir", filepath.Join(dir, "worker-"+n), "--data-dir", filepath.Join(dir, "worker-"+n+"-data"), "--slots", fmt.Sprint(s.opts.WorkerSlots)}
		for k, v := range s.opts.WorkerLabels {
			args = append(args, "--label", k+"="+v)
		}
		if _, err := s.StartProc(ctx, n, "", args...); err != nil {
			return err
		}
	}
	return nil
}

// WriteTrybotConfig writes a tryd.yaml for "tryd trybot" against the
// stack and returns its path.
func (s *Stack) WriteTrybotConfig(dir, buildersYAML string) (string, error) {
	cfg := fmt.Sprintf(`gerrit:
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
`, s.Gerrit.URL(), s.BotUser, s.BotPasswordFile, s.Project, s.Project, buildersYAML, s.opts.PublicURL)
	path := filepath.Join(dir, "tryd.yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

// StartTrybotProcess runs "tryd trybot" against the stack.
func (s *Stack) StartTrybotProcess(ctx context.Context, dir, buildersYAML string, extra ...string) (*Proc, error) {
	cfg, err := s.WriteTrybotConfig(dir, buildersYAML)
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := append([]string{"trybot", "--config", cfg, "--data-dir", filepath.Join(dir, "data"), "--listen", addr,
		"--maintnerd", s.MaintnerdURL, "--coordinator", s.CoordinatorURL, "--coordinator-token-file", s.ClientTokenFile,
		"--gitmirror", s.GitmirrorURL}, extra...)
	return s.StartProc(ctx, "trybot", addr, args...)
}
