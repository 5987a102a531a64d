package process

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// procStat is the part of /proc/<pid>/stat that the provisioner trusts.
type procStat struct {
	state      byte   // 'R', 'S', 'Z', ...
	pgrp       int    // process group id
	startTicks uint64 // field 22: start time since boot in clock ticks
	exitCode   int    // field 52: waitpid-style status; valid for zombies
	hasExit    bool
}

// errGone reports that /proc has no entry for the pid.
var errGone = errors.New("no such process")

// readStat reads /proc/<pid>/stat. It returns errGone when the pid does not
// exist (any more).
func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			return procStat{}, errGone
		}
		return procStat{}, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	return parseStat(data)
}

// parseStat parses the text of /proc/<pid>/stat. The command name (field 2)
// may hold spaces and parentheses, so parsing starts after its last ')'.
func parseStat(data []byte) (procStat, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 > len(data) {
		return procStat{}, fmt.Errorf("parse stat: no command field")
	}
	// f[0] is field 3 (state); field N is f[N-3].
	f := strings.Fields(string(data[i+2:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("parse stat: %d fields", len(f))
	}
	pgrp, err := strconv.Atoi(f[2])
	if err != nil {
		return procStat{}, fmt.Errorf("parse stat pgrp: %w", err)
	}
	ticks, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("parse stat starttime: %w", err)
	}
	st := procStat{state: f[0][0], pgrp: pgrp, startTicks: ticks}
	if len(f) > 49 {
		if code, err := strconv.Atoi(f[49]); err == nil {
			st.exitCode, st.hasExit = code, true
		}
	}
	return st, nil
}

func (s procStat) zombie() bool { return s.state == 'Z' || s.state == 'X' }
