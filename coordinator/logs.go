package coordinator

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
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
