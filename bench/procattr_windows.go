package bench

import "syscall"

// procAttr has nothing to add on Windows.
func procAttr() *syscall.SysProcAttr { return nil }
