//go:build unix

package lockfile

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestAcquireExcludes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "client.lock")
	l, err := Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Release() })
	if b, _ := os.ReadFile(path); string(b) != fmt.Sprintf("%d\n", os.Getpid()) {
		t.Errorf("lock file holds %q, want this process's ID", b)
	}
	_, err = Acquire(path)
	var held *HeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrHeld) || held.PID != os.Getpid() {
		t.Fatalf("second Acquire: %v, want a HeldError naming pid %d", err, os.Getpid())
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	l2, err := Acquire(path)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	l2.Release()
}

// TestHeldByAnotherProcess: the lock of a live process is held; its PID is
// reported; when that process is gone the lock is free, though its file
// stays.
func TestHeldByAnotherProcess(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("flock(1) (Debian package util-linux) is not installed")
	}
	path := filepath.Join(t.TempDir(), "exit.lock")
	os.WriteFile(path, []byte("4242\n"), 0o600)
	// flock(1) holds the lock while cat waits for input that never comes
	// until the test closes it.
	holder := exec.Command("flock", "-n", path, "cat")
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, _ := holder.StdoutPipe()
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); holder.Wait() })
	// cat echoes a line once flock holds the lock and has started it.
	stdin.Write([]byte("ready\n"))
	buf := make([]byte, 6)
	if _, err := stdout.Read(buf); err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(path)
	var held *HeldError
	if !errors.As(err, &held) || held.PID != 4242 || !strings.Contains(err.Error(), "pid 4242") {
		t.Fatalf("Acquire while another process holds it: %v, want the PID the file records", err)
	}
	stdin.Close()
	holder.Wait()
	l, err := Acquire(path)
	if err != nil {
		t.Fatalf("Acquire after the holder exited: %v", err)
	}
	l.Release()
}
