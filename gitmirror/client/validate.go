package client

import (
	"errors"
	"fmt"
	"strings"
)

// Limits on names that travel in URLs; longer ones are refused before they
// reach git or the file system.
const (
	maxRepoName = 200
	maxRev      = 256
)

// ErrBadName is wrapped by CheckRepoName and CheckRev when a repository
// name or revision is not acceptable; servers answer it with 400.
var ErrBadName = errors.New("bad repository name or revision")

// CheckRepoName reports whether name is an acceptable repository name:
// one or more "/"-separated parts of letters, digits, '.', '_' and '-',
// each starting with a letter or digit, with no ".." anywhere. Such a name
// can neither start an option nor leave the directory it is joined to.
func CheckRepoName(name string) error {
	if name == "" || len(name) > maxRepoName {
		return fmt.Errorf("%w: repository name must be 1 to %d characters", ErrBadName, maxRepoName)
	}
	if strings.Contains(name, "..") {
		return fmt.Errorf("%w: repository name %q contains \"..\"", ErrBadName, name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" || !isAlnum(part[0]) {
			return fmt.Errorf("%w: repository name %q: each part must start with a letter or digit", ErrBadName, name)
		}
		for i := 0; i < len(part); i++ {
			if c := part[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
				return fmt.Errorf("%w: repository name %q: character %q not allowed", ErrBadName, name, c)
			}
		}
	}
	return nil
}

// CheckRev reports whether rev is an acceptable revision: 4 to 64
// hexadecimal digits (a full or abbreviated object name), or a ref name
// under "refs/" made of letters, digits, '.', '_', '-' and '/', whose parts
// are not empty, do not start with '.' or '-' and do not end in ".lock",
// with no "..". Anything else (options, revision expressions such as
// "HEAD~1" or "@{...}", paths) is refused.
func CheckRev(rev string) error {
	if rev == "" || len(rev) > maxRev {
		return fmt.Errorf("%w: revision must be 1 to %d characters", ErrBadName, maxRev)
	}
	if IsHex(rev) {
		if len(rev) < 4 || len(rev) > 64 {
			return fmt.Errorf("%w: object name %q must have 4 to 64 hex digits", ErrBadName, rev)
		}
		return nil
	}
	return CheckRefName(rev)
}

// CheckRefName reports whether ref is an acceptable full ref name
// ("refs/..."), with the rules of CheckRev.
func CheckRefName(ref string) error {
	if !strings.HasPrefix(ref, "refs/") || len(ref) > maxRev {
		return fmt.Errorf("%w: revision %q is neither hex nor a refs/... name", ErrBadName, ref)
	}
	if strings.Contains(ref, "..") {
		return fmt.Errorf("%w: ref %q contains \"..\"", ErrBadName, ref)
	}
	for _, part := range strings.Split(ref, "/") {
		if part == "" || part[0] == '.' || part[0] == '-' || strings.HasSuffix(part, ".lock") {
			return fmt.Errorf("%w: ref %q has an empty or hidden part", ErrBadName, ref)
		}
		for i := 0; i < len(part); i++ {
			if c := part[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
				return fmt.Errorf("%w: ref %q: character %q not allowed", ErrBadName, ref, c)
			}
		}
	}
	return nil
}

// IsHex reports whether s is non-empty and all hexadecimal digits.
func IsHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// IsFullHash reports whether s is a full SHA-1 or SHA-256 object name in
// lower case, the form git prints.
func IsFullHash(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
