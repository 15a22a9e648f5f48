package graph

import (
	"archive/tar"
	"bytes"
	"errors"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"jobs": [{"name": "a", "source_mode": "none", "commands": [{"argv": ["true"]}]}]}`))
	f.Add([]byte(`{"source": {"repo": "https://m/x.git", "revision": "` + rev + `"}, "jobs": [
		{"name": "gen", "commands": [{"write_file": {"path": "a", "content": "x"}}]},
		{"name": "b", "deps": ["gen"], "commands": [{"argv": ["cat", "{{DEP:gen}}/a"], "dir": "{{OUTPUT_DIR}}"}]}]}`))
	f.Add([]byte(`{"jobs": [{"name": "a", "deps": ["b"], "source_mode": "none", "commands": [{"argv": ["x"]}]}, {"name": "b", "deps": ["a"], "source_mode": "none", "commands": [{"argv": ["x"]}]}]}`))
	f.Add([]byte(`{"source": {"files": [{"path": "a/b", "digest": "` + strings.Repeat("a", 64) + `", "size": 3}]}, "jobs": [{"name": "x", "source_mode": "inputs", "inputs": [{"path": "a"}], "timeout": 30, "commands": [{"argv": ["{{SOURCE_DIR}}"]}]}]}`))
	f.Add([]byte(`{"jobs": null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		// A normalized graph must normalize again to the same IDs.
		ids := make([]string, len(g.Jobs))
		clone := &Graph{Source: g.Source}
		for i, j := range g.Jobs {
			ids[i] = j.ID
			clone.Jobs = append(clone.Jobs, j.Clone())
		}
		if err := clone.Normalize(); err != nil {
			t.Fatalf("renormalize: %v", err)
		}
		for i, j := range clone.Jobs {
			if j.ID != ids[i] {
				t.Fatalf("job %q: ID changed on renormalize", j.Name)
			}
		}
	})
}

func FuzzReadOutputs(f *testing.F) {
	mk := func(entries ...tar.Header) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, h := range entries {
			h := h
			tw.WriteHeader(&h)
			if h.Typeflag == tar.TypeReg {
				tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
			}
		}
		tw.Close()
		return b.Bytes()
	}
	f.Add(mk(tar.Header{Name: "a", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644}))
	f.Add(mk(tar.Header{Name: "../a", Typeflag: tar.TypeReg, Size: 1}))
	f.Add(mk(tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/tmp"}, tar.Header{Name: "l/x", Typeflag: tar.TypeReg, Size: 1}))
	f.Add(mk(tar.Header{Name: "d/", Typeflag: tar.TypeDir}, tar.Header{Name: "d/l", Typeflag: tar.TypeSymlink, Linkname: "../x"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		_ = ReadOutputs(bytes.NewReader(data), dir, OutputLimits{MaxBytes: 1 << 20, MaxEntries: 1000})
	})
}

func TestReadOutputsRefusesHostileArchives(t *testing.T) {
	mk := func(entries ...tar.Header) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, h := range entries {
			h := h
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg {
				tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
			}
		}
		tw.Close()
		return b.Bytes()
	}
	tests := []struct {
		name string
		tar  []byte
	}{
		{"dotdot", mk(tar.Header{Name: "../evil", Typeflag: tar.TypeReg, Size: 1})},
		{"absolute", mk(tar.Header{Name: "/tmp/evil", Typeflag: tar.TypeReg, Size: 1})},
		{"symlink out", mk(tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "../../x"})},
		{"write through symlink", mk(tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "d"}, tar.Header{Name: "l/x", Typeflag: tar.TypeReg, Size: 1})},
		{"device", mk(tar.Header{Name: "dev", Typeflag: tar.TypeChar})},
		{"hard link", mk(tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"})},
		{"too big", mk(tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: 2000})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ReadOutputs(bytes.NewReader(tt.tar), t.TempDir(), OutputLimits{MaxBytes: 1000})
			if !errors.Is(err, ErrUnsafeOutput) {
				t.Errorf("ReadOutputs = %v, want ErrUnsafeOutput", err)
			}
		})
	}
}
