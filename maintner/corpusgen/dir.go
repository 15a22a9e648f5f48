package corpusgen

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/maintner/reclog"
)

// MaxSegment is the largest segment DirWriter writes, the log's 16 MiB.
const MaxSegment = 16 << 20

// DirWriter frames payloads into sealed segment files of at most
// MaxSegment bytes, named as a disk store names them
// ("0000.<sha224>.mutlog"), so that a generated directory can be served,
// followed and loaded like a real log. It writes whole files at once and
// does not fsync: generated logs are scratch data.
type DirWriter struct {
	dir   string
	num   int
	buf   []byte
	files []string
}

// NewDirWriter returns a writer into dir, which must be empty or absent.
func NewDirWriter(dir string) (*DirWriter, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("corpusgen: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("corpusgen: %w", err)
	}
	if len(ents) > 0 {
		return nil, fmt.Errorf("corpusgen: output directory %s is not empty", dir)
	}
	return &DirWriter{dir: dir, buf: make([]byte, 0, MaxSegment)}, nil
}

// Write appends one record.
func (w *DirWriter) Write(payload []byte) error {
	if reclog.RecordLen(int64(len(w.buf)), len(payload)) > MaxSegment-int64(len(w.buf)) && len(w.buf) > 0 {
		if err := w.seal(); err != nil {
			return err
		}
	}
	if reclog.RecordLen(0, len(payload)) > MaxSegment {
		return fmt.Errorf("corpusgen: record of %d bytes does not fit a segment", len(payload))
	}
	w.buf = reclog.AppendRecord(w.buf, int64(len(w.buf)), payload)
	return nil
}

func (w *DirWriter) seal() error {
	sum := sha256.Sum224(w.buf)
	p := filepath.Join(w.dir, mutlog.SealedName(w.num, hex.EncodeToString(sum[:])))
	if err := os.WriteFile(p, w.buf, 0o644); err != nil {
		return fmt.Errorf("corpusgen: %w", err)
	}
	w.files = append(w.files, p)
	w.num++
	w.buf = w.buf[:0]
	return nil
}

// Close writes the last segment and returns the paths of all segment
// files in order.
func (w *DirWriter) Close() ([]string, error) {
	if len(w.buf) > 0 {
		if err := w.seal(); err != nil {
			return nil, err
		}
	}
	return w.files, nil
}
