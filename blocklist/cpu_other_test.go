//go:build !unix

package blocklist_test

func processCPU() float64 { return 0 }
