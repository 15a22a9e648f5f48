package ingest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/build/maintner/maintpb"

	"github.com/tryd-ci/tryd/internal/gitexec"
	"github.com/tryd-ci/tryd/maintner"
)

// git runs git in dir with stdin, returning its standard output; the
// error (a *gitexec.Error) quotes git's standard error. The command and
// its helpers (git-remote-https, index-pack) are killed after
// CommandTimeout.
func (g *Gerrit) git(ctx context.Context, dir string, stdin io.Reader, args ...string) ([]byte, error) {
	return gitexec.Cmd{
		Git:     g.opts.Git,
		Env:     g.env,
		Args:    append([]string{"-C", dir}, args...),
		Stdin:   stdin,
		Timeout: g.opts.CommandTimeout,
	}.Output(ctx)
}

// initMirror creates the project's bare mirror on first use.
func (g *Gerrit) initMirror(ctx context.Context, p *gerritProject) error {
	if p.inited {
		return nil
	}
	if _, err := os.Stat(filepath.Join(p.dir, "HEAD")); err != nil {
		if err := os.MkdirAll(p.dir, 0o755); err != nil {
			return fmt.Errorf("ingest: Gerrit %s: mirror: %w", p.name, err)
		}
		if _, err := g.git(ctx, p.dir, nil, "init", "--bare", "--quiet"); err != nil {
			return fmt.Errorf("ingest: Gerrit %s: mirror: %w", p.name, err)
		}
		// Objects only arrive by fetch; never repack them away while a
		// sync reads them.
		if _, err := g.git(ctx, p.dir, nil, "config", "gc.auto", "0"); err != nil {
			return fmt.Errorf("ingest: Gerrit %s: mirror: %w", p.name, err)
		}
	}
	p.inited = true
	return nil
}

// readCommits reads commits from the mirror as maintpb.GitCommits: the
// raw object ("git cat-file commit") and, except for NoteDb meta
// commits, whose trees hold only notes, the numstat of "git diff-tree
// --numstat" against the first parent, as x/build's maintner records.
// Two git processes serve the whole batch.
func (g *Gerrit) readCommits(ctx context.Context, dir string, hashes []maintner.GitHash) ([]*maintpb.GitCommit, error) {
	var in bytes.Buffer
	for _, h := range hashes {
		in.WriteString(h.String() + "\n")
	}
	out, err := g.git(ctx, dir, bytes.NewReader(in.Bytes()), "cat-file", "--batch")
	if err != nil {
		return nil, err
	}
	commits := make([]*maintpb.GitCommit, 0, len(hashes))
	var diffIn bytes.Buffer
	idx := map[string]*maintpb.GitCommit{}
	rd := bufio.NewReader(bytes.NewReader(out))
	for _, h := range hashes {
		hdr, err := rd.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("cat-file: short output for %s", h)
		}
		f := strings.Fields(hdr)
		if len(f) != 3 || f[0] != h.String() || f[1] != "commit" {
			return nil, fmt.Errorf("cat-file %s: unexpected %q", h, strings.TrimSpace(hdr))
		}
		size, err := strconv.Atoi(f[2])
		if err != nil || size < 0 || size > 64<<20 {
			return nil, fmt.Errorf("cat-file %s: bad size %q", h, f[2])
		}
		raw := make([]byte, size+1)
		if _, err := io.ReadFull(rd, raw); err != nil {
			return nil, fmt.Errorf("cat-file %s: %w", h, err)
		}
		gc := &maintpb.GitCommit{Sha1: h.String(), Raw: raw[:size]}
		commits = append(commits, gc)
		if !isMetaCommit(gc.Raw) {
			gc.DiffTree = &maintpb.GitDiffTree{}
			idx[gc.Sha1] = gc
			diffIn.WriteString(gc.Sha1 + "\n")
		}
	}
	if diffIn.Len() == 0 {
		return commits, nil
	}
	out, err = g.git(ctx, dir, &diffIn, "diff-tree", "--stdin", "--numstat", "--no-renames")
	if err != nil {
		return nil, err
	}
	var cur *maintpb.GitCommit
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" {
			continue
		}
		if gc, ok := idx[line]; ok && !strings.Contains(line, "\t") {
			cur = gc
			continue
		}
		if cur == nil {
			continue
		}
		// <added>\t<deleted>\t<file>; "-" for both on binary files.
		parts := strings.SplitN(line, "\t", 3)
		if len(parts) != 3 {
			continue
		}
		binary := parts[0] == "-" || parts[1] == "-"
		added, _ := strconv.ParseInt(parts[0], 10, 64)
		deleted, _ := strconv.ParseInt(parts[1], 10, 64)
		cur.DiffTree.File = append(cur.DiffTree.File, &maintpb.GitDiffTreeFile{File: unquoteGitPath(parts[2]), Added: added, Deleted: deleted, Binary: binary})
	}
	return commits, nil
}

// unquoteGitPath undoes git's C-style quoting of unusual file names.
func unquoteGitPath(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		if u, err := strconv.Unquote(s); err == nil {
			return u
		}
	}
	return s
}

// isMetaCommit reports whether a raw commit is a NoteDb meta commit: its
// message's last paragraph has a Patch-set footer.
func isMetaCommit(raw []byte) bool {
	i := bytes.Index(raw, []byte("\n\n"))
	if i < 0 {
		return false
	}
	msg := bytes.TrimRight(raw[i+2:], "\n")
	if j := bytes.LastIndex(msg, []byte("\n\n")); j >= 0 {
		msg = msg[j+2:]
	}
	return bytes.HasPrefix(msg, []byte("Patch-set: ")) || bytes.Contains(msg, []byte("\nPatch-set: "))
}
