package reclog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"testing/iotest"
)

type rec struct {
	off     int64
	payload string
}

func collectScan(t testing.TB, data []byte, start int64) ([]rec, int64, error) {
	var got []rec
	end, err := Scan("seg", data, start, func(off int64, p []byte) error {
		got = append(got, rec{off, string(p)})
		return nil
	})
	return got, end, err
}

func collectReader(r io.Reader, start int64) ([]rec, int64, error) {
	var got []rec
	rr := NewReader(r, "seg", start)
	for {
		off, p, err := rr.Next()
		if err == io.EOF {
			return got, rr.Offset(), nil
		}
		if err != nil {
			return got, rr.Offset(), err
		}
		got = append(got, rec{off, string(p)})
	}
}

// TestGolden checks the framing against a sample in x/build's format
// (written with x/build's reclog.WriteRecord: "REC@%x+%x=%s").
func TestGolden(t *testing.T) {
	want, err := os.ReadFile("testdata/x-build-sample.mutlog")
	if err != nil {
		t.Fatal(err)
	}
	var buf []byte
	var off int64
	for _, p := range []string{"hello", "", "abc"} {
		buf = AppendRecord(buf, off, []byte(p))
		off = int64(len(buf))
	}
	if !bytes.Equal(buf, want) {
		t.Fatalf("AppendRecord = %q, want %q", buf, want)
	}
	var w bytes.Buffer
	if err := WriteRecord(&w, 0, []byte("hello")); err != nil || w.String() != "REC@0+5=hello" {
		t.Fatalf("WriteRecord = %q, %v", w.String(), err)
	}
	got, end, err := collectScan(t, want, 0)
	if err != nil || end != int64(len(want)) {
		t.Fatalf("Scan: end %d err %v", end, err)
	}
	wantRecs := []rec{{0, "hello"}, {13, ""}, {21, "abc"}}
	if fmt.Sprint(got) != fmt.Sprint(wantRecs) {
		t.Fatalf("Scan = %v, want %v", got, wantRecs)
	}
}

func TestLengths(t *testing.T) {
	for _, tc := range []struct {
		name string
		off  int64
		n    int
	}{
		{"zero", 0, 0}, {"small", 9, 15}, {"hex boundary", 16, 16}, {"large", 0xffffff, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := AppendRecord(nil, tc.off, make([]byte, tc.n))
			if int64(len(got)) != RecordLen(tc.off, tc.n) || len(got)-tc.n != HeaderLen(tc.off, tc.n) {
				t.Fatalf("len %d, RecordLen %d, HeaderLen %d", len(got), RecordLen(tc.off, tc.n), HeaderLen(tc.off, tc.n))
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	good := AppendRecord(AppendRecord(nil, 0, []byte("hello")), 13, []byte("world"))
	for _, tc := range []struct {
		name      string
		data      string
		start     int64
		wantRecs  int
		wantOff   int64
		truncated bool
	}{
		{"empty", "", 0, 0, -1, false},
		{"good", string(good), 0, 2, -1, false},
		{"good at start offset", "REC@64+2=hiREC@6f+0=", 100, 2, -1, false},
		{"torn payload", string(good[:20]), 0, 1, 13, true},
		{"torn header", string(good[:16]), 0, 1, 13, true},
		{"torn prefix", string(good[:15]), 0, 1, 13, true},
		{"zero tail", string(good) + "\x00\x00\x00\x00", 0, 2, 26, false},
		{"wrong offset", "REC@1+2=hi", 0, 0, 0, false},
		{"wrong start", "REC@0+2=hi", 5, 0, 5, false},
		{"no digits", "REC@+2=hi", 0, 0, 0, false},
		{"no length digits", "REC@0+=hi", 0, 0, 0, false},
		{"sign", "REC@0+-2=hi", 0, 0, 0, false},
		{"two pluses", "REC@0+2+3=hi", 0, 0, 0, false},
		{"overlong hex", "REC@00000000000000000+2=hi", 0, 0, 0, false},
		{"huge length", "REC@0+7fffffffffffffff=hi", 0, 0, 0, false},
		{"garbage", "hello world", 0, 0, 0, false},
		{"upper-case hex", "REC@0+A=0123456789", 0, 1, -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, end, err := collectScan(t, []byte(tc.data), tc.start)
			rgot, rend, rerr := collectReader(iotest.OneByteReader(bytes.NewReader([]byte(tc.data))), tc.start)
			if len(got) != tc.wantRecs || len(rgot) != tc.wantRecs {
				t.Errorf("records: Scan %d, Reader %d, want %d", len(got), len(rgot), tc.wantRecs)
			}
			if tc.wantOff < 0 {
				if err != nil || rerr != nil {
					t.Fatalf("unexpected errors: Scan %v, Reader %v", err, rerr)
				}
				if end != tc.start+int64(len(tc.data)) || rend != end {
					t.Errorf("end: Scan %d, Reader %d, want %d", end, rend, int64(len(tc.data)))
				}
				return
			}
			for _, e := range []error{err, rerr} {
				var re *Error
				if !errors.As(e, &re) || !errors.Is(e, ErrCorrupt) {
					t.Fatalf("err = %v, want *Error", e)
				}
				if re.Offset != tc.wantOff || re.Segment != "seg" || re.Truncated != tc.truncated || errors.Is(e, ErrTruncated) != tc.truncated {
					t.Errorf("err = %+v, want offset %d truncated %v", re, tc.wantOff, tc.truncated)
				}
			}
			if end != tc.wantOff {
				t.Errorf("Scan end = %d, want %d", end, tc.wantOff)
			}
		})
	}
}

func TestReaderLargeRecords(t *testing.T) {
	var buf []byte
	var want []rec
	for i, n := range []int{0, 1, 300 << 10, 5, 1 << 20, 7} {
		p := bytes.Repeat([]byte{byte('a' + i)}, n)
		want = append(want, rec{int64(len(buf)), string(p)})
		buf = AppendRecord(buf, int64(len(buf)), p)
	}
	got, end, err := collectReader(bytes.NewReader(buf), 0)
	if err != nil || end != int64(len(buf)) {
		t.Fatalf("end %d err %v", end, err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("record %d differs", i)
		}
	}
}

func TestReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader([]byte("REC@0+5=he")), iotest.ErrReader(boom))
	_, _, err := collectReader(r, 0)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want wrapped boom", err)
	}
}

func TestCallbackError(t *testing.T) {
	stop := errors.New("stop")
	data := AppendRecord(nil, 0, []byte("x"))
	if _, err := Scan("s", data, 0, func(int64, []byte) error { return stop }); err != stop {
		t.Fatalf("Scan err = %v", err)
	}
	if err := ForEach(bytes.NewReader(data), "s", 0, func(int64, []byte) error { return stop }); err != stop {
		t.Fatalf("ForEach err = %v", err)
	}
}

// FuzzScan feeds arbitrary bytes to both readers: neither may panic, both
// must agree, and every record they return must re-encode to the input.
func FuzzScan(f *testing.F) {
	f.Add([]byte("REC@0+5=helloREC@d+0=REC@15+3=abc"), int64(0))
	f.Add([]byte("REC@0+5=hel"), int64(0))
	f.Add([]byte("REC@a+1=x"), int64(10))
	f.Add([]byte("REC@0+ffffffffffffffff=x"), int64(0))
	f.Add([]byte("\x00\x00REC@"), int64(0))
	f.Fuzz(func(t *testing.T, data []byte, start int64) {
		if start < 0 {
			start = -start
			if start < 0 {
				start = 0
			}
		}
		got, end, err := collectScan(t, data, start)
		rgot, rend, rerr := collectReader(bytes.NewReader(data), start)
		if (err == nil) != (rerr == nil) || end != rend || len(got) != len(rgot) {
			t.Fatalf("Scan (%d recs, end %d, %v) and Reader (%d recs, end %d, %v) disagree", len(got), end, err, len(rgot), rend, rerr)
		}
		// Records must tile the accepted prefix: each starts with "REC@"
		// and its payload ends where the next record (or the prefix) starts.
		for i, r := range got {
			next := end
			if i+1 < len(got) {
				next = got[i+1].off
			}
			rel, relNext := r.off-start, next-start
			if !bytes.HasPrefix(data[rel:], []byte("REC@")) || !bytes.Equal(data[relNext-int64(len(r.payload)):relNext], []byte(r.payload)) {
				t.Fatalf("record %d at %d does not tile the input", i, r.off)
			}
		}
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v is not ErrCorrupt", err)
		}
	})
}

func BenchmarkScan(b *testing.B) {
	var buf []byte
	p := bytes.Repeat([]byte("x"), 500)
	for len(buf) < 16<<20-600 {
		buf = AppendRecord(buf, int64(len(buf)), p)
	}
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := Scan("b", buf, 0, func(int64, []byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReader(b *testing.B) {
	var buf []byte
	p := bytes.Repeat([]byte("x"), 500)
	for len(buf) < 16<<20-600 {
		buf = AppendRecord(buf, int64(len(buf)), p)
	}
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if err := ForEach(bytes.NewReader(buf), "b", 0, func(int64, []byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
