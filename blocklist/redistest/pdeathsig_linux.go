package redistest

import (
	"os/exec"
	"syscall"
)

// killWithParent makes the kernel kill redis-server if the test binary dies
// without running its cleanups (a panic, a timeout, kill -9).
func killWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
