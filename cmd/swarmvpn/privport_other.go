//go:build !linux

package main

import "os"

// mayBindHTTPS reports whether this process may listen on port 443.
func mayBindHTTPS() bool { return os.Geteuid() == 0 }
