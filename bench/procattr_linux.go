package bench

import "syscall"

// procAttr puts a child in a process group of its own, so a Ctrl-C on the
// terminal reaches only bench (which then stops it), and has the kernel
// kill it if bench dies without stopping it.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
