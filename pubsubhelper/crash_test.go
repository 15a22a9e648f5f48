package pubsubhelper

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/internal/httpserver"
	"github.com/tryd-ci/tryd/internal/testenv"
	"github.com/tryd-ci/tryd/pubsubhelper/client"
	"github.com/tryd-ci/tryd/pubsubhelper/journal"
	"github.com/tryd-ci/tryd/pubsubhelper/pubsubtypes"
)

// childEnv names the journal directory when the test binary runs as a
// pubsubhelper subprocess for TestKill9.
const childEnv = "TRYD_PUBSUBHELPER_TEST_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(runChild(dir))
	}
	os.Exit(m.Run())
}

// runChild serves a pubsubhelper on a journal in dir and prints its URL,
// until it is killed.
func runChild(dir string) int {
	j, err := journal.Open(journal.Options{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, err := New(Options{Journal: j, GitHubSecrets: []Secret{{Server: "github", Value: []byte(testGitHubSecret)}}, OpenSubscribers: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	hs, err := httpserver.New(httpserver.Options{Handler: s.Handler(), Component: "pubsubhelper"})
	if err == nil {
		err = hs.Listen()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("URL %s\n", hs.URL())
	if err := hs.Serve(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startChild runs the test binary as a pubsubhelper process.
func startChild(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "URL ") {
		t.Fatalf("child did not start: %q %v", line, err)
	}
	return cmd, strings.TrimSpace(strings.TrimPrefix(line, "URL "))
}

// TestKill9 delivers webhooks from concurrent senders to a pubsubhelper
// subprocess, kills it with SIGKILL while deliveries are in flight, and
// checks after a restart that every delivery answered 2xx reaches a
// subscriber.
func TestKill9(t *testing.T) {
	testenv.Short(t)
	dir := t.TempDir()
	cmd, url := startChild(t, dir)

	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		wg    sync.WaitGroup
		sent  = 0
	)
	hc := &http.Client{Timeout: 10 * time.Second}
	killAfter := 150
	killed := make(chan struct{})
	var killOnce sync.Once
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-killed:
					return
				default:
				}
				id := fmt.Sprintf("kill9-%d-%d", w, i)
				body := []byte(fmt.Sprintf(`{"action":"opened","repository":{"full_name":"o/r"},"issue":{"number":%d}}`, i+1))
				req, _ := http.NewRequest("POST", url+"/github-webhook", strings.NewReader(string(body)))
				req.Header.Set("X-GitHub-Event", "issues")
				req.Header.Set("X-GitHub-Delivery", id)
				req.Header.Set("X-Hub-Signature-256", sign(testGitHubSecret, body))
				mu.Lock()
				sent++
				mu.Unlock()
				resp, err := hc.Do(req)
				if err != nil {
					return // the server died mid-request: not acknowledged
				}
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					mu.Lock()
					acked[id] = true
					n := len(acked)
					mu.Unlock()
					if n >= killAfter {
						killOnce.Do(func() {
							cmd.Process.Signal(syscall.SIGKILL)
							close(killed)
						})
					}
				}
			}
		}()
	}
	wg.Wait()
	cmd.Wait()
	mu.Lock()
	t.Logf("sent %d deliveries, %d acknowledged before SIGKILL", sent, len(acked))
	mu.Unlock()

	_, url2 := startChild(t, dir)
	c, _ := client.New(url2, client.Options{})
	seen := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Subscribe from the start of the journal by time, as a subscriber
	// that had seen nothing.
	err := c.Subscribe(ctx, pubsubtypes.Cursor{Time: pubsubtypes.Time(time.Unix(1, 0))}, pubsubtypes.Filter{}, client.SubscribeOptions{WaitOptions: client.WaitOptions{Timeout: 200 * time.Millisecond}}, func(_ context.Context, ev *pubsubtypes.Event) error {
		if seen[ev.DeliveryID] {
			return fmt.Errorf("delivery %s seen twice", ev.DeliveryID)
		}
		seen[ev.DeliveryID] = true
		for id := range acked {
			if !seen[id] {
				return nil
			}
		}
		return errDone
	})
	if err != errDone {
		missing := 0
		for id := range acked {
			if !seen[id] {
				missing++
			}
		}
		t.Fatalf("after restart: %v; %d of %d acknowledged deliveries missing", err, missing, len(acked))
	}
}

var errDone = fmt.Errorf("done")
