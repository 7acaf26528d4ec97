package statefile

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

// TestWriteAtomic: the directory is made, the file replaced whole, no
// temporary file left, and the modes are private.
func TestWriteAtomic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "state.json")
	for _, want := range []string{"first, longer content", "second"} {
		if err := WriteAtomic(path, []byte(want)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Fatalf("file holds %q, want %q", got, want)
		}
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Fatalf("file mode %v, want 0600", m)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if m := di.Mode().Perm(); m&0o077 != 0 {
		t.Fatalf("directory mode %v, want none for group and others", m)
	}
}

// TestWriteAtomicSyncs: the temporary file is flushed whole before it is
// renamed over the file, and the directory after the rename, so that the
// new file survives a power cut.
func TestWriteAtomicSyncs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := WriteAtomic(path, []byte("old")); err != nil {
		t.Fatal(err)
	}
	var seen []string
	orig := fsync
	t.Cleanup(func() { fsync = orig })
	fsync = func(f *os.File) error {
		tmp, _ := os.ReadFile(path + ".tmp")
		cur, _ := os.ReadFile(path)
		seen = append(seen, fmt.Sprintf("%s tmp=%q file=%q", f.Name(), tmp, cur))
		return orig(f)
	}
	if err := WriteAtomic(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf("%s tmp=%q file=%q", path+".tmp", "new", "old"),
		fmt.Sprintf("%s tmp=%q file=%q", filepath.Dir(path), "", "new"),
	}
	if runtime.GOOS == "windows" {
		want = want[:1]
	}
	if !slices.Equal(seen, want) {
		t.Fatalf("flushes:\n%q\nwant\n%q", seen, want)
	}
}
