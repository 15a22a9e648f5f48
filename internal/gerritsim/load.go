package gerritsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/tryd-ci/tryd/internal/notedb"
)

// accountsFile holds the accounts in Dir, so that a simulator reopened on
// the same directory (tryd dev's data dir) keeps them. Gerrit keeps them
// in All-Users; the simulator does not simulate that repository.
const accountsFile = "accounts.json"

// saveAccountsLocked writes every account to Dir/accounts.json (0600: it
// holds the HTTP passwords of test and demo accounts).
func (s *Sim) saveAccountsLocked() error {
	list := make([]*Account, 0, len(s.accounts))
	for _, id := range sortedKeys(s.accounts) {
		list = append(list, s.accounts[id])
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.opts.Dir, accountsFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.opts.Dir, accountsFile))
}

// Load reads what a previous simulator left in Dir: accounts, projects
// (labels from refs/meta/config) and changes, whose state is replayed from
// their NoteDb meta refs with package notedb. Call it after New and before
// serving; it fails if the simulator already has projects or accounts.
func (s *Sim) Load(ctx context.Context) error {
	if err := s.load(ctx); err != nil {
		return fmt.Errorf("gerritsim: load %s: %w", s.opts.Dir, err)
	}
	return nil
}

func (s *Sim) load(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.projects) > 0 || len(s.accounts) > 0 {
		return errors.New("simulator is not empty")
	}
	b, err := os.ReadFile(filepath.Join(s.opts.Dir, accountsFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	default:
		var list []*Account
		if err := json.Unmarshal(b, &list); err != nil {
			return fmt.Errorf("%s: %w", accountsFile, err)
		}
		for _, a := range list {
			if a == nil || a.ID <= 0 {
				return fmt.Errorf("%s: bad account", accountsFile)
			}
			s.accounts[a.ID] = a
			s.nextAccount = max(s.nextAccount, a.ID+1)
		}
	}
	var dirs []string
	err = filepath.WalkDir(s.opts.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasSuffix(path, ".git") {
			dirs = append(dirs, path)
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(dirs)
	for _, dir := range dirs {
		rel, err := filepath.Rel(s.opts.Dir, dir)
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(filepath.ToSlash(rel), ".git")
		if err := s.loadProject(ctx, name, &repo{git: s.opts.Git, dir: dir}); err != nil {
			return fmt.Errorf("project %s: %w", name, err)
		}
	}
	return nil
}

func (s *Sim) loadProject(ctx context.Context, name string, r *repo) error {
	head, err := r.run(ctx, nil, nil, "symbolic-ref", "HEAD")
	if err != nil {
		return err
	}
	cfg, err := r.run(ctx, nil, nil, "cat-file", "blob", "refs/meta/config:project.config")
	if err != nil {
		return err
	}
	desc, labels, err := parseProjectConfig(cfg)
	if err != nil {
		return err
	}
	p := &Project{Name: name, Description: desc, Labels: labels, HeadBranch: strings.TrimPrefix(head, "refs/heads/"), repo: r}
	s.projects[name] = p
	refs, err := r.run(ctx, nil, nil, "for-each-ref", "--format=%(refname)", "refs/changes/")
	if err != nil {
		return err
	}
	for _, ref := range strings.Fields(refs) {
		n, _, meta, ok := notedb.ParseChangeRef(ref)
		if !ok || !meta {
			continue
		}
		if err := s.loadChange(ctx, p, n, ref); err != nil {
			return fmt.Errorf("change %d: %w", n, err)
		}
		s.nextChange = max(s.nextChange, n+1)
	}
	return nil
}

func (s *Sim) loadChange(ctx context.Context, p *Project, n int, ref string) error {
	list, err := p.repo.run(ctx, nil, nil, "rev-list", "--reverse", ref)
	if err != nil {
		return err
	}
	c := &change{number: n, project: p, notes: notedb.NewChange(), patchSets: map[int]*patchSet{}}
	for _, sha := range strings.Fields(list) {
		raw, err := p.repo.run(ctx, nil, nil, "cat-file", "commit", sha)
		if err != nil {
			return err
		}
		rc, err := notedb.ParseRawCommit(sha, []byte(raw+"\n"))
		if err != nil {
			return err
		}
		u, err := notedb.ParseCommit(rc.Commit)
		if err != nil {
			return err
		}
		if err := c.notes.Apply(u); err != nil {
			return err
		}
		for _, rv := range u.Reviewers {
			if id, ok := rv.Ident.Account(); ok {
				c.reviewerUpdates = append(c.reviewerUpdates, reviewerUpdate{When: u.Time, By: u.Account, Reviewer: id, State: rv.State})
			}
		}
		c.meta = sha
	}
	if err := c.notes.Validate(); err != nil {
		return err
	}
	c.changeID = c.notes.ChangeID
	c.branch = strings.TrimPrefix(c.notes.Branch, "refs/heads/")
	var prev *patchSet
	for _, num := range c.notes.PatchSetNumbers() {
		nps := c.notes.PatchSets[num]
		raw, err := p.repo.run(ctx, nil, nil, "cat-file", "commit", nps.Commit)
		if err != nil {
			return err
		}
		rc, err := notedb.ParseRawCommit(nps.Commit, []byte(raw+"\n"))
		if err != nil {
			return err
		}
		if len(rc.Parents) == 0 {
			return fmt.Errorf("patch set %d has no parent", num)
		}
		who := person{rc.Author, rc.AuthorTime}
		ps, err := s.newPatchSet(ctx, c, num, nps.Commit, rc.Parents[0], rc.Tree, who, rc.Message, nps.Uploader, nps.Created)
		if err != nil {
			return err
		}
		ps.committer = person{rc.Committer, rc.Time}
		ps.kind = "REWORK"
		if prev != nil {
			if ps.kind, err = changeKind(ctx, p.repo, prev, ps); err != nil {
				return err
			}
		}
		prev = ps
	}
	if c.patchSets[c.notes.CurrentPatchSet()] == nil {
		return errors.New("current patch set commit is missing")
	}
	s.changes[n] = c
	return nil
}

// parseProjectConfig reads the project.config that CreateProject writes.
func parseProjectConfig(cfg string) (string, []Label, error) {
	var desc string
	var labels []Label
	var cur *Label
	for _, line := range strings.Split(cfg, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") {
			cur = nil
			if name, ok := strings.CutPrefix(line, "[label \""); ok {
				name = strings.TrimSuffix(name, "\"]")
				labels = append(labels, Label{Name: name, Values: map[int]string{}, Min: 1 << 30, Max: -1 << 30})
				cur = &labels[len(labels)-1]
			}
			continue
		}
		key, val, _ := strings.Cut(line, "=")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch {
		case key == "description" && cur == nil:
			desc = val
		case cur == nil:
		case key == "function":
			cur.Function = LabelFunction(val)
		case key == "copyCondition":
			cur.CopyCondition = val
		case key == "value":
			num, text, _ := strings.Cut(val, " ")
			v, err := strconv.Atoi(strings.TrimPrefix(num, "+"))
			if err != nil {
				return "", nil, fmt.Errorf("project.config: label %s: bad value %q", cur.Name, val)
			}
			cur.Values[v] = strings.TrimSpace(text)
			cur.Min, cur.Max = min(cur.Min, v), max(cur.Max, v)
		}
	}
	for _, l := range labels {
		if err := l.validate(); err != nil {
			return "", nil, fmt.Errorf("project.config: %w", err)
		}
	}
	return desc, labels, nil
}
