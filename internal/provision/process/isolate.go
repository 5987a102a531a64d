package process

import (
	"bufio"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// UIDRange is a range of user (and group) ids for boxes, both ends
// included. The zero range means no isolation.
type UIDRange struct {
	First, Last uint32
}

// DefaultUIDRange is 65536 ids well above those of a machine's real users,
// as container runtimes use for their subordinate ids.
var DefaultUIDRange = UIDRange{First: 200000, Last: 265535}

// IsZero reports whether the range is unset.
func (r UIDRange) IsZero() bool { return r.First == 0 && r.Last == 0 }

func (r UIDRange) String() string {
	if r.IsZero() {
		return "off"
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// ParseUIDRange parses "FIRST-LAST" (or "off"). Ids under 1000 are refused:
// they belong to the system and its real users.
func ParseUIDRange(s string) (UIDRange, error) {
	if s == "off" || s == "" {
		return UIDRange{}, nil
	}
	a, b, ok := strings.Cut(s, "-")
	first, err1 := strconv.ParseUint(a, 10, 32)
	last, err2 := strconv.ParseUint(b, 10, 32)
	if !ok || err1 != nil || err2 != nil || first < 1000 || last < first || last >= 1<<32-1 {
		return UIDRange{}, fmt.Errorf("uid range %q: want FIRST-LAST with 1000 <= FIRST <= LAST < 4294967295, or off", s)
	}
	return UIDRange{First: uint32(first), Last: uint32(last)}, nil
}

func (r UIDRange) contains(uid uint32) bool { return !r.IsZero() && uid >= r.First && uid <= r.Last }

// setupIsolation checks the box directory and makes it what isolation
// needs: owned by root, not a symlink, 0711 (each box can reach its own
// directory, none can list the others), and reachable by any user.
func setupIsolation(dir string) error {
	if dir == "" || !filepath.IsAbs(dir) {
		return fmt.Errorf("box dir %q: an absolute path is required to isolate boxes", dir)
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return fmt.Errorf("create box dir: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("box dir: %w", err)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || st == nil || st.Uid != 0 {
		return fmt.Errorf("box dir %s must be a directory owned by root (not a symlink)", dir)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return fmt.Errorf("box dir: %w", err)
	}
	// An id of the range that no file is owned by: it reaches dir only
	// through "other" permissions, as every box does.
	if err := reachable(dir, 1<<31, 1<<31, true); err != nil {
		return fmt.Errorf("box dir %s: %w", dir, err)
	}
	return nil
}

// reachable reports why uid:gid could not reach path: enter every
// directory on the way and then execute the file (wantDir: enter the
// directory).
func reachable(path string, uid, gid uint32, wantDir bool) error {
	abs, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	if abs, err = filepath.Abs(abs); err != nil {
		return err
	}
	var dirs []string
	for d := filepath.Dir(abs); ; d = filepath.Dir(d) {
		dirs = append(dirs, d)
		if d == "/" || d == "." {
			break
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := check(dirs[i], uid, gid, true); err != nil {
			return err
		}
	}
	return check(abs, uid, gid, wantDir)
}

func check(path string, uid, gid uint32, dir bool) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	switch {
	case dir && !fi.IsDir():
		return fmt.Errorf("%s is not a directory", path)
	case dir && !may(st, uid, gid, 1):
		return fmt.Errorf("directory %s (mode %04o, owner %d:%d) cannot be entered by uid %d", path, fi.Mode().Perm(), st.Uid, st.Gid, uid)
	case !dir && (!fi.Mode().IsRegular() || !may(st, uid, gid, 1)):
		return fmt.Errorf("%s (mode %04o, owner %d:%d) cannot be executed by uid %d", path, fi.Mode().Perm(), st.Uid, st.Gid, uid)
	}
	return nil
}

// may applies the permission bits (bit: 4 read, 2 write, 1 execute) as the
// kernel does for an unprivileged user: owner, else group, else others.
func may(st *syscall.Stat_t, uid, gid uint32, bit uint32) bool {
	switch {
	case st.Uid == uid:
		return st.Mode&(bit<<6) != 0
	case st.Gid == gid:
		return st.Mode&(bit<<3) != 0
	}
	return st.Mode&bit != 0
}

// claimUID picks a box user: the first id from a point chosen by the
// workspace (so a workspace tends to keep its id) that no process uses and
// whose claim can be made. The claim is creating BoxDir/<uid> (root's,
// 0711): mkdir is atomic, so two control planes sharing the machine and
// the box dir never pick the same id. The box's working directory is
// BoxDir/<uid>/<workspace>-g<generation>, 0700 and the box user's; the box
// cannot rename or remove it, so it names this box alone. Stop removes both.
func (p *Provisioner) claimUID(workspaceID string, generation int64) (uint32, string, error) {
	r := p.cfg.BoxUIDs
	size := uint64(r.Last) - uint64(r.First) + 1
	h := fnv.New64a()
	h.Write([]byte(workspaceID))
	start := h.Sum64() % size
	busy := uidsInUse()
	// First pass: ids never claimed. Second: claims left by boxes that died
	// without being stopped (killed with the control plane, say), whose
	// user runs nothing: they are taken over, so the range does not run
	// out. A handle of such a box finds its directory gone and releases
	// nothing.
	for i := range 2 * size {
		uid := uint32(uint64(r.First) + (start+i)%size)
		if busy[uid] {
			continue
		}
		claim := filepath.Join(p.cfg.BoxDir, strconv.FormatUint(uint64(uid), 10))
		if i >= size {
			if len(pidsOfUID(uid)) > 0 {
				continue
			}
			p.log.Info("taking over the uid claim of a dead box", "uid", uid)
			if err := os.RemoveAll(claim); err != nil {
				continue
			}
		}
		if err := os.Mkdir(claim, 0o711); err != nil {
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			return 0, "", fmt.Errorf("claim box uid: %w", err)
		}
		dir := filepath.Join(claim, fmt.Sprintf("%s-g%d", workspaceID, generation))
		err := os.Chmod(claim, 0o711) // whatever the umask
		if err == nil {
			err = os.Mkdir(dir, 0o700)
		}
		if err == nil {
			err = os.Lchown(dir, int(uid), int(uid))
		}
		if err != nil {
			_ = os.RemoveAll(claim)
			return 0, "", fmt.Errorf("create box dir: %w", err)
		}
		return uid, dir, nil
	}
	return 0, "", fmt.Errorf("no free box uid in %s", r)
}

// releaseUID kills whatever still runs as the box's user (a box that left
// its process group, or a daemon it started) and removes its directories.
// It acts only while the box's own working directory exists, directly in
// the claim of an id of the configured range: a handle released before,
// whose id another box holds now, finds no such directory and touches
// nothing.
func (p *Provisioner) releaseUID(uid uint32, dir string) {
	if !p.isolated || !p.cfg.BoxUIDs.contains(uid) || dir == "" {
		return
	}
	claim := filepath.Dir(dir)
	if filepath.Dir(claim) != filepath.Clean(p.cfg.BoxDir) || filepath.Base(claim) != strconv.FormatUint(uint64(uid), 10) {
		return
	}
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return
	}
	for range 10 {
		pids := pidsOfUID(uid)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		p.log.Info("killed leftovers of box user", "uid", uid, "processes", len(pids))
	}
	if err := os.RemoveAll(claim); err != nil {
		p.log.Warn("remove box dir", "dir", claim, "err", err)
	}
}

// uidsInUse returns the real user ids of every process on the machine.
func uidsInUse() map[uint32]bool {
	out := map[uint32]bool{}
	forEachProc(func(pid int, uid uint32) { out[uid] = true })
	return out
}

// pidsOfUID lists the live processes whose real user id is uid.
func pidsOfUID(uid uint32) []int {
	var out []int
	forEachProc(func(pid int, u uint32) {
		if u == uid {
			if st, err := readStat(pid); err == nil && !st.zombie() {
				out = append(out, pid)
			}
		}
	})
	return out
}

func forEachProc(fn func(pid int, uid uint32)) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if uid, ok := realUID(pid); ok {
			fn(pid, uid)
		}
	}
}

// realUID reads a process's real user id from /proc/<pid>/status (its
// /proc directory's owner is the effective id, root for a setuid program).
func realUID(pid int) (uint32, bool) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Uid:"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				return 0, false
			}
			u, err := strconv.ParseUint(fields[0], 10, 32)
			return uint32(u), err == nil
		}
	}
	return 0, false
}

// closeOnExecAll marks every descriptor above stderr close-on-exec. Go
// opens its own that way, but descriptors orgplane inherited (from a shell,
// a service manager, a parent that leaked them) are not, and every box
// would inherit them in turn: a pipe or file of the control plane's.
func closeOnExecAll() {
	if unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
}
