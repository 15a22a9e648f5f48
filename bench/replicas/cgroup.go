package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// cpuLimit is a cgroup whose CPU bandwidth is limited: a coordinator in
// it runs as if on a machine of its own with that much CPU. That is how
// replicas are deployed when one machine is not enough, and the only way
// one machine shows whether a second replica adds dispatch capacity:
// unlimited, the coordinators share the workers' cores and a second one
// can only add its own costs.
type cpuLimit struct {
	dir string
}

// minPeriodMicros is the shortest bandwidth period: short, so that a
// coordinator that spent its quota waits milliseconds, not the default
// 100ms, before it runs again (a long stall would idle every worker at
// once). The period is longer when the kernel's minimum quota (1ms)
// needs it.
const minPeriodMicros = 10000

// newCPULimit makes a cgroup named name limited to cpus CPUs, under the
// cgroup v2 hierarchy when it has the cpu controller, else under cgroup
// v1's cpu controller. It needs the right to create cgroups (root).
func newCPULimit(name string, cpus float64) (*cpuLimit, error) {
	if cpus <= 0 || cpus > 64 {
		return nil, fmt.Errorf("cpu limit %.3f CPUs out of range", cpus)
	}
	period := max(minPeriodMicros, int(1000/cpus+0.5))
	quota := int(cpus*float64(period) + 0.5)
	if ctrl, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && slices.Contains(strings.Fields(string(ctrl)), "cpu") {
		// Children get the cpu controller only when it is enabled
		// for them (already, or now).
		_ = os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte("+cpu"), 0)
		dir := filepath.Join("/sys/fs/cgroup", name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, fmt.Errorf("cgroup v2: %w", err)
		}
		l := &cpuLimit{dir: dir}
		if err := l.write("cpu.max", fmt.Sprintf("%d %d", quota, period)); err != nil {
			l.close()
			return nil, err
		}
		return l, nil
	}
	root := "/sys/fs/cgroup/cpu"
	if _, err := os.Stat(filepath.Join(root, "cpu.cfs_quota_us")); err != nil {
		return nil, errors.New("no cgroup cpu controller found (cgroup v2 with cpu, or v1 at /sys/fs/cgroup/cpu)")
	}
	dir := filepath.Join(root, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup v1: %w", err)
	}
	l := &cpuLimit{dir: dir}
	if err := l.write("cpu.cfs_period_us", strconv.Itoa(period)); err != nil {
		l.close()
		return nil, err
	}
	if err := l.write("cpu.cfs_quota_us", strconv.Itoa(quota)); err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

// add moves process pid (all its threads) into the cgroup.
func (l *cpuLimit) add(pid int) error {
	return l.write("cgroup.procs", strconv.Itoa(pid))
}

// close removes the cgroup; its processes must have exited.
func (l *cpuLimit) close() {
	if err := os.Remove(l.dir); err != nil {
		fmt.Fprintln(os.Stderr, "replicas: remove cgroup:", err)
	}
}

func (l *cpuLimit) write(file, value string) error {
	if err := os.WriteFile(filepath.Join(l.dir, file), []byte(value), 0); err != nil {
		return fmt.Errorf("cgroup %s: %w", l.dir, err)
	}
	return nil
}
