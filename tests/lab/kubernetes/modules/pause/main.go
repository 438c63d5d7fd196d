// The pod sandbox's PID 1 for the lab's locally built pause image: it holds the pod's
// namespaces open, reaps orphans, and exits cleanly when the runtime stops the sandbox. Like the
// official pause (pause.c), `-v` prints its version and exits 0: kubeadm's upgrade preflight runs
// it that way in a Job and waits for the Job to complete.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
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
	for _, argument := range os.Args[1:] {
		if strings.EqualFold(argument, "-v") {
			fmt.Println("pause (kubeha lab build of the sandbox image)")
			return
		}
	}
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
