package coordinator

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"github.com/tryd-ci/tryd/coordinator/api"
)

// attemptIDRE is the form of attempt IDs (randomID), checked before an ID
// from a request reaches the file system.
var attemptIDRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

// logStore keeps each attempt's log in a file dir/ab/<attempt id>.log.
type logStore struct {
	dir string
}

func newLogStore(dir string) (*logStore, error) {
	if err := ensureDir(dir); err != nil {
		return nil, err
	}
	return &logStore{dir: dir}, nil
}

func (l *logStore) path(id string) (string, error) {
	if !attemptIDRE.MatchString(id) {
		return "", fmt.Errorf("bad attempt ID %q", id)
	}
	return filepath.Join(l.dir, id[:2], id+".log"), nil
}

// appendAt writes data at offset off of the log (which must be the log's
// current size as the caller tracks it).
func (l *logStore) appendAt(id string, off int64, data []byte) error {
	p, err := l.path(id)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("coordinator: log %s: %w", id, err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("coordinator: log %s: %w", id, err)
	}
	_, err = f.WriteAt(data, off)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("coordinator: log %s: %w", id, err)
	}
	return nil
}

// logAppend is what appendChunk did to an attempt's log.
type logAppend struct {
	// size is where the stored log ends now, also after a failed
	// append (a notice may have been written); elsewhere is whether
	// the next chunk may still start beyond it.
	size      int64
	elsewhere bool
	// data is what was written of the chunk, at offset at (empty if
	// nothing new was); truncated reports bytes dropped beyond the
	// limit.
	data      []byte
	at        int64
	truncated bool
}

// appendChunk stores a chunk that a worker sent at offset in the log of
// attempt id, whose stored part ends at size, keeping at most limit
// bytes. A chunk overlapping what is stored (a retry) is trimmed; one
// starting beyond the end is a conflict, except the first chunk of a
// log that began on another replica's disk (elsewhere: an attempt
// adopted with a claimed build, or one waiting for its build's claim):
// the bytes this replica never received stand as a notice (logGap).
// The caller serializes the appends of one attempt.
func (l *logStore) appendChunk(id string, size int64, elsewhere bool, limit, offset int64, data []byte) (logAppend, error) {
	r := logAppend{size: size, elsewhere: elsewhere}
	if offset > r.size && r.elsewhere && offset <= limit {
		if err := l.appendAt(id, r.size, logGap(offset-r.size)); err != nil {
			return r, err
		}
		r.size = offset
	}
	r.elsewhere = false
	if offset > r.size || offset < 0 {
		return r, fmt.Errorf("log of attempt %s: offset %d, but %d bytes received: %w", id, offset, r.size, api.ErrConflict)
	}
	if skip := r.size - offset; skip > 0 {
		if skip >= int64(len(data)) {
			return r, nil
		}
		data = data[skip:]
	}
	if room := limit - r.size; int64(len(data)) > room {
		data, r.truncated = data[:max(room, 0)], true
	}
	if len(data) > 0 {
		if err := l.appendAt(id, r.size, data); err != nil {
			return r, err
		}
		r.data, r.at = data, r.size
		r.size += int64(len(data))
	}
	return r, nil
}

// open returns the log from offset on; a missing log reads as empty.
func (l *logStore) open(id string, off int64) (io.ReadCloser, error) {
	p, err := l.path(id)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return io.NopCloser(&emptyReader{}), nil
	}
	if err != nil {
		return nil, fmt.Errorf("coordinator: log %s: %w", id, err)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("coordinator: log %s: %w", id, err)
	}
	return f, nil
}

// size returns the length of the stored log (0 if none).
func (l *logStore) size(id string) int64 {
	p, err := l.path(id)
	if err != nil {
		return 0
	}
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

type emptyReader struct{}

func (*emptyReader) Read([]byte) (int, error) { return 0, io.EOF }
