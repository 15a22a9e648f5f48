//go:build !linux

package segmap

import "os"

// mapFile is Linux-only (see segmap_linux.go).
func mapFile(*os.File, int64, bool) ([]byte, error) { return nil, ErrUnsupported }

func unmapFile([]byte) error { return nil }
