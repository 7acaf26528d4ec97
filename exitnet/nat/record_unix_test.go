//go:build unix

package nat

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadRecordFIFO: a FIFO where the record file should be is refused,
// not opened (which would block Run, and so Close, for ever).
func TestReadRecordFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nat.json")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := readRecord(path); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("readRecord of a FIFO: %v", err)
		}
	case <-time.After(10 * time.Second):
		// Unblock the open so the goroutine ends.
		if f, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
		t.Fatal("readRecord blocked on a FIFO")
	}
}
