package statefile

import (
	"os"
	"path/filepath"
	"runtime"
)

// WriteAtomic replaces path with b: it writes path+".tmp" (mode 0600,
// creating the directory with mode 0700 if needed), flushes it to disk,
// renames it over path and flushes the directory, so a reader sees the old
// file or the new one, never a part, and a power cut after WriteAtomic
// returns leaves the new one. Two flushes per write: callers that write
// often go through a Flusher.
func WriteAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := writeSynced(tmp, b); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// fsync flushes f to disk; tests replace it to see when it is called.
var fsync = (*os.File).Sync

// writeSynced writes b to a new or truncated file at path and flushes it:
// without the flush, a crash after the rename can leave path empty on
// file systems that order the rename before the data (ext4 with
// delalloc, XFS).
func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := fsync(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncDir flushes dir, so that the rename into it survives a crash.
// Windows cannot flush a directory handle; there the rename is left to the
// file system.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return fsync(d)
}
