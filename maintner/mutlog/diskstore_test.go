package mutlog_test

import (
	"testing"

	"github.com/tryd-ci/tryd/maintner/mutlog"
	"github.com/tryd-ci/tryd/maintner/mutlog/storetest"
)

func TestDiskStoreConformance(t *testing.T) {
	storetest.Test(t, func(t *testing.T) func() mutlog.Store {
		dir := t.TempDir()
		return func() mutlog.Store {
			s, err := mutlog.NewDiskStore(dir)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	})
}
