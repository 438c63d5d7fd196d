// The pod sandbox's PID 1 for the lab's locally built pause image: it holds the pod's
// namespaces open, reaps orphans, and exits cleanly when the runtime stops the sandbox.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func reapChildren() {
	for {
		var status syscall.WaitStatus
		if pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil); pid <= 0 || err != nil {
			return
		}
	}
}

func main() {
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for received := range signals {
		if received == syscall.SIGCHLD {
			reapChildren()
			continue
		}
		os.Exit(0)
	}
}
