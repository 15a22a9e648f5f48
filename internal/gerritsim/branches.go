package gerritsim

import (
	"context"
	"fmt"
	"strings"
)

// CreateBranch creates refs/heads/<branch> in project at revision (a
// commit SHA or a ref) as account, and sends ref-updated. It returns the
// branch's commit.
func (s *Sim) CreateBranch(ctx context.Context, project, branch, revision string, account int) (string, error) {
	sha, err := s.createBranch(ctx, project, branch, revision, account)
	if err != nil {
		return "", fmt.Errorf("gerritsim: create branch %s in %s: %w", branch, project, err)
	}
	return sha, nil
}

func (s *Sim) createBranch(ctx context.Context, project, branch, revision string, account int) (string, error) {
	branch = strings.TrimPrefix(branch, "refs/heads/")
	if branch == "" || strings.ContainsAny(branch, " ~^:?*[\\\n") || strings.Contains(branch, "..") {
		return "", fmt.Errorf("%w: bad branch name %q", ErrBadRequest, branch)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.projects[project]
	if !ok {
		return "", fmt.Errorf("%w: project %s", ErrNotFound, project)
	}
	if _, err := s.accountLocked(account); err != nil {
		return "", err
	}
	sha, err := p.repo.resolve(ctx, revision)
	if err != nil {
		return "", err
	}
	ref := "refs/heads/" + branch
	if _, err := p.repo.resolve(ctx, ref); err == nil {
		return "", fmt.Errorf("%w: branch %s already exists", ErrConflict, branch)
	}
	up := refUpdate{Ref: ref, New: sha}
	if err := p.repo.updateRefs(ctx, up); err != nil {
		return "", err
	}
	s.emitKey("project:"+project, s.refUpdatedEvent(project, up, account, s.clock()))
	return sha, nil
}

// CommitToBranch writes files over the tip of project's branch as a new
// commit by account and advances the branch, as a direct push that
// bypasses review would; it sends ref-updated and returns the commit.
func (s *Sim) CommitToBranch(ctx context.Context, project, branch string, account int, subject string, files map[string]string) (string, error) {
	sha, err := s.commitToBranch(ctx, project, branch, account, subject, files)
	if err != nil {
		return "", fmt.Errorf("gerritsim: commit to %s in %s: %w", branch, project, err)
	}
	return sha, nil
}

func (s *Sim) commitToBranch(ctx context.Context, project, branch string, accountID int, subject string, files map[string]string) (string, error) {
	subject = strings.TrimSpace(subject)
	if subject == "" {
		return "", fmt.Errorf("%w: empty subject", ErrBadRequest)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.projects[project]
	if !ok {
		return "", fmt.Errorf("%w: project %s", ErrNotFound, project)
	}
	acct, err := s.accountLocked(accountID)
	if err != nil {
		return "", err
	}
	ref := "refs/heads/" + strings.TrimPrefix(branch, "refs/heads/")
	tip, err := p.repo.resolve(ctx, ref)
	if err != nil {
		return "", err
	}
	tree, err := p.repo.buildTree(ctx, tip, files)
	if err != nil {
		return "", err
	}
	now := s.clock()
	who := person{acct.gitIdent(), now}
	sha, err := p.repo.commit(ctx, tree, []string{tip}, who, who, subject+"\n")
	if err != nil {
		return "", err
	}
	up := refUpdate{Ref: ref, Old: tip, New: sha}
	if err := p.repo.updateRefs(ctx, up); err != nil {
		return "", err
	}
	s.emitKey("project:"+project, s.refUpdatedEvent(project, up, accountID, now))
	return sha, nil
}
