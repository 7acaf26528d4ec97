package statefile

import (
	"os"
	"path/filepath"
)

// WriteAtomic replaces path with b: it writes path+".tmp" (mode 0600,
// creating the directory with mode 0700 if needed) and renames it over
// path, so a reader sees the old file or the new one, never a part.
func WriteAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
