package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"

	"go.uber.org/zap"
)

// startCPUProfile profiles the process into path until the returned stop runs.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// writeHeapProfile writes the live heap to path; a failure is logged, not
// fatal, as the service has already stopped.
func writeHeapProfile(e *env, path string) {
	f, err := os.Create(path)
	if err == nil {
		runtime.GC() // up-to-date statistics
		err = pprof.WriteHeapProfile(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		e.log.Warn("heap profile not written", zap.String("path", path), zap.Error(err))
	}
}
