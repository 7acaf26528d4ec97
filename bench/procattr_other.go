//go:build unix && !linux

package bench

import "syscall"

// procAttr puts a child in a process group of its own, so a Ctrl-C on the
// terminal reaches only bench, which then stops it.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
