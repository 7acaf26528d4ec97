package statefile

import (
	"os"
	"path/filepath"
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
