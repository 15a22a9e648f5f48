package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tryd-ci/tryd/coordinator/api"
	"github.com/tryd-ci/tryd/coordinator/graph"
)

func TestHostileOutputsCannotEscape(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1")
	tests := []struct {
		name, script, wantErr string
	}{
		{"symlink to /etc", `ln -s /etc "$0/etc"`, "absolute"},
		{"symlink to parent", `ln -s .. "$0/up"`, "outside"},
		{"symlink through a dot link", `ln -s . "$0/s"; ln -s s/.. "$0/l"`, "outside"},
		{"fifo", `mkfifo "$0/pipe"`, "unsupported"},
	}
	var jobs []*graph.Job
	for _, tt := range tests {
		j := sh(tt.name, tt.script)
		j.Commands[0].Argv = append(j.Commands[0].Argv, "{{OUTPUT_DIR}}")
		jobs = append(jobs, j)
	}
	b, _ := e.run(&graph.Graph{Jobs: jobs})
	for _, tt := range tests {
		j := jobByName(b, tt.name)
		if j.State != api.JobFailed || !strings.Contains(j.Error, tt.wantErr) {
			t.Errorf("%s: state %s error %q; want failed with %q", tt.name, j.State, j.Error, tt.wantErr)
		}
		if j.OutputDigest != "" {
			t.Errorf("%s: outputs were accepted (%s)", tt.name, j.OutputDigest)
		}
	}

	// write_file paths that leave the output directory never get past
	// the coordinator.
	bad := &graph.Job{Name: "wf", SourceMode: graph.SourceNone, Commands: []graph.Command{{WriteFile: &graph.WriteFile{Path: "../../escape", Content: "x"}}}}
	_, err := e.cl.Submit(context.Background(), api.SubmitRequest{Graph: graph.Graph{Jobs: []*graph.Job{bad}}})
	if !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("write_file ../: submit err = %v, want bad request", err)
	}
}

// hostileArchive plants symlinks that pass a lexical check and then
// writes through them, plus a plain ../ entry.
func hostileArchive(t *testing.T) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	add := func(h *tar.Header, body string) {
		h.Size = int64(len(body))
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	add(&tar.Header{Name: "ok.txt", Typeflag: tar.TypeReg, Mode: 0o644}, "fine")
	add(&tar.Header{Name: "s", Typeflag: tar.TypeSymlink, Linkname: ".", Mode: 0o777}, "")
	add(&tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "s/..", Mode: 0o777}, "")
	add(&tar.Header{Name: "l/pwned", Typeflag: tar.TypeReg, Mode: 0o644}, "escaped")
	add(&tar.Header{Name: "../../pwned", Typeflag: tar.TypeReg, Mode: 0o644}, "escaped")
	tw.Close()
	return b.Bytes()
}

// TestHostileDependencyArchive plays a rogue worker (with a real worker
// token, over the real protocol) that reports a hostile output archive;
// the real worker running the dependent job must refuse to unpack it and
// write nothing outside its directories.
func TestHostileDependencyArchive(t *testing.T) {
	t.Parallel()
	e := start(t, "")
	e.worker("w1", "--label", "pool=honest")
	rogue, err := api.NewClient(e.c.URL, strings.TrimSpace(readFile(t, e.c.TokenFile("w3"))), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reg, err := rogue.Register(ctx, api.RegisterRequest{Labels: map[string]string{"pool": "rogue"}, Slots: 1})
	if err != nil {
		t.Fatal(err)
	}
	evil := sh("evil", "true")
	evil.Labels = map[string]string{"pool": "rogue"}
	victim := sh("victim", `ls -la "$0"`)
	victim.Commands[0].Argv = append(victim.Commands[0].Argv, "{{DEP:evil}}")
	victim.Deps = []string{"evil"}
	victim.Labels = map[string]string{"pool": "honest"}
	id, _ := e.submit(&graph.Graph{Jobs: []*graph.Job{evil, victim}})

	var asg api.Assignment
	for asg.AttemptID == "" {
		resp, err := rogue.Poll(ctx, api.PollRequest{WorkerID: reg.WorkerID, FreeSlots: 1, WaitMS: 5000})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Assignments) > 0 {
			asg = resp.Assignments[0]
		}
	}
	archive := hostileArchive(t)
	sum := sha256.Sum256(archive)
	digest := hex.EncodeToString(sum[:])
	if err := rogue.PutArtifact(ctx, digest, bytes.NewReader(archive), int64(len(archive))); err != nil {
		t.Fatal(err)
	}
	zero := 0
	if _, err := rogue.Poll(ctx, api.PollRequest{WorkerID: reg.WorkerID, Results: []api.AttemptResult{{
		AttemptID: asg.AttemptID, State: api.AttemptSucceeded, ExitCode: &zero, OutputDigest: digest, OutputSize: int64(len(archive)),
	}}, WaitMS: 1}); err != nil {
		t.Fatal(err)
	}
	b := e.wait(id)
	v := jobByName(b, "victim")
	if v.State != api.JobFailed || !strings.Contains(v.Error, "escapes") {
		t.Errorf("victim: state %s error %q; want failed refusing the archive", v.State, v.Error)
	}
	filepath.WalkDir(e.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "pwned" {
			t.Errorf("hostile archive wrote %s", p)
		}
		return nil
	})
}
