package image

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/wrennhq/wrenn/images"
)

// The guest's unprivileged account: E2B SDKs run commands as "user" by default.
const (
	guestUser    = "user"
	guestUID     = 1000
	guestHome    = "home/user"
	envdGuestBin = "usr/local/bin/envd"
)

// guestFile is a file Wrenn writes into every root filesystem (owned by root).
type guestFile struct {
	path string // relative to the guest's /
	mode os.FileMode
	data []byte
}

// guestFiles lists what is injected besides envd. Their contents are part of a template's
// inputs hash, so editing images/wrenn-init rebuilds templates.
func guestFiles() ([]guestFile, error) {
	initSh, err := images.Read("wrenn-init")
	if err != nil {
		return nil, fmt.Errorf("read embedded wrenn-init: %w", err)
	}
	chrony, err := images.Read("chrony.conf")
	if err != nil {
		return nil, fmt.Errorf("read embedded chrony.conf: %w", err)
	}
	return []guestFile{
		{"usr/local/bin/wrenn-init", 0o755, initSh},
		// Replaces Debian's chrony.conf (pool servers): the PHC refclock is the only source.
		{"etc/chrony/chrony.conf", 0o644, chrony},
		{"etc/hostname", 0o644, []byte("sandbox\n")},
		{"etc/hosts", 0o644, []byte("127.0.0.1\tlocalhost\n127.0.1.1\tsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n")},
		{"etc/sudoers.d/" + guestUser, 0o440, []byte(guestUser + " ALL=(ALL:ALL) NOPASSWD:ALL\n")},
	}, nil
}

// inject writes envd and the guest files into tree and makes sure the guest user exists.
// All writes go through os.Root, so a hostile tree (a container tar with /usr/local/bin
// pointing at the host's /usr) can make the build fail but never write outside it.
func inject(tree string, envd []byte, files []guestFile) error {
	r, err := os.OpenRoot(tree)
	if err != nil {
		return fmt.Errorf("open staging tree: %w", err)
	}
	defer r.Close()

	var missing []string
	for _, need := range [][]string{{"usr/bin/tini"}, {"bin/sh"}, {"bin/bash", "usr/bin/bash"}, {"etc/passwd"}} {
		found := false
		for _, p := range need {
			if fi, err := resolveIn(r, p); err == nil && fi.Mode().IsRegular() {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, "/"+need[0])
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the image lacks %s: Wrenn guests need tini at /usr/bin/tini (PID 1), /bin/sh and bash", strings.Join(missing, ", "))
	}
	for _, d := range []struct {
		name string
		mode os.FileMode
	}{{"proc", 0o555}, {"sys", 0o555}, {"dev", 0o755}, {"run", 0o755}, {"tmp", os.ModeSticky | 0o777}, {"usr/local/bin", 0o755}} {
		if _, err := r.Lstat(d.name); errors.Is(err, fs.ErrNotExist) {
			if err := r.MkdirAll(d.name, 0o755); err != nil {
				return fmt.Errorf("create /%s in the guest: %w", d.name, err)
			}
			if err := r.Chmod(d.name, d.mode); err != nil {
				return fmt.Errorf("chmod /%s in the guest: %w", d.name, err)
			}
		}
	}
	if err := replaceFile(r, envdGuestBin, envd, 0o755, 0, 0); err != nil {
		return err
	}
	for _, f := range files {
		if err := r.MkdirAll(path.Dir(f.path), 0o755); err != nil {
			return fmt.Errorf("create /%s in the guest: %w", path.Dir(f.path), err)
		}
		if err := replaceFile(r, f.path, f.data, f.mode, 0, 0); err != nil {
			return err
		}
	}
	return ensureUser(r)
}

// replaceFile writes name atomically inside r, replacing a file or symlink of that name
// (the rename replaces the link itself, never its target).
func replaceFile(r *os.Root, name string, data []byte, mode os.FileMode, uid, gid int) error {
	tmp := name + ".wrenn-tmp"
	_ = r.Remove(tmp)
	f, err := r.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write /%s in the guest: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chown(uid, gid)
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.Rename(tmp, name)
	}
	if err != nil {
		_ = r.Remove(tmp)
		return fmt.Errorf("write /%s in the guest: %w", name, err)
	}
	return nil
}

// ensureUser adds the guest user (uid 1000 when free, shell /bin/bash, home /home/user)
// by editing passwd/group/shadow directly, which works for any image without running its
// binaries on the host.
func ensureUser(r *os.Root) error {
	passwd, err := r.ReadFile("etc/passwd")
	if err != nil {
		return fmt.Errorf("read /etc/passwd in the guest: %w", err)
	}
	group, err := r.ReadFile("etc/group")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read /etc/group in the guest: %w", err)
	}
	uid, gid, home := -1, -1, guestHome
	usedUID, usedGID := map[int]bool{}, map[int]bool{}
	for _, line := range strings.Split(string(passwd), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 7 {
			continue
		}
		u, _ := strconv.Atoi(f[2])
		usedUID[u] = true
		if f[0] == guestUser {
			uid, _ = strconv.Atoi(f[2])
			gid, _ = strconv.Atoi(f[3])
			// An image that already has the user keeps its home directory (when it is one
			// under /home: never chown /root or / to the user).
			if h := strings.Trim(path.Clean("/"+f[5]), "/"); strings.HasPrefix(h, "home/") {
				home = h
			}
		}
	}
	groupGID := -1
	for _, line := range strings.Split(string(group), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 3 {
			continue
		}
		g, _ := strconv.Atoi(f[2])
		usedGID[g] = true
		if f[0] == guestUser {
			groupGID = g
		}
	}
	if groupGID < 0 {
		if gid < 0 {
			gid = freeID(usedGID, guestUID)
		}
		if err := appendLine(r, "etc/group", fmt.Sprintf("%s:x:%d:", guestUser, gid), 0o644); err != nil {
			return err
		}
		if _, err := r.Lstat("etc/gshadow"); err == nil {
			if err := appendLine(r, "etc/gshadow", guestUser+":!::", 0o640); err != nil {
				return err
			}
		}
	} else if gid < 0 {
		gid = groupGID
	}
	if uid < 0 {
		uid = freeID(usedUID, guestUID)
		line := fmt.Sprintf("%s:x:%d:%d:Sandbox user:/%s:/bin/bash", guestUser, uid, gid, guestHome)
		if err := appendLine(r, "etc/passwd", line, 0o644); err != nil {
			return err
		}
		if _, err := r.Lstat("etc/shadow"); err == nil {
			// "*": no password login; a last-change day > 0 so PAM never demands a new
			// password (that would break passwordless sudo).
			days := time.Now().Unix() / 86400
			if err := appendLine(r, "etc/shadow", fmt.Sprintf("%s:*:%d:0:99999:7:::", guestUser, days), 0o640); err != nil {
				return err
			}
		}
	}
	if err := r.MkdirAll(home, 0o755); err != nil {
		return fmt.Errorf("create /%s in the guest: %w", home, err)
	}
	if err := r.Chown(home, uid, gid); err != nil {
		return fmt.Errorf("chown /%s in the guest: %w", home, err)
	}
	return copySkel(r, home, uid, gid)
}

func freeID(used map[int]bool, from int) int {
	for id := from; ; id++ {
		if !used[id] {
			return id
		}
	}
}

// appendLine adds a line to a guest file, keeping its owner and mode (shadow is root:shadow
// 0640 on Debian) or using mode for a new file.
func appendLine(r *os.Root, name, line string, mode os.FileMode) error {
	data, err := r.ReadFile(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read /%s in the guest: %w", name, err)
	}
	uid, gid := 0, 0
	if fi, err := r.Stat(name); err == nil {
		mode = fi.Mode().Perm()
		if st, ok := statOwner(fi); ok {
			uid, gid = st[0], st[1]
		}
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	data = append(data, line+"\n"...)
	return replaceFile(r, name, data, mode, uid, gid)
}

// copySkel gives the user Debian's dotfiles (.bashrc, .profile) when the image has them.
func copySkel(r *os.Root, home string, uid, gid int) error {
	entries, err := fs.ReadDir(r.FS(), "etc/skel")
	if err != nil {
		return nil // no /etc/skel: nothing to copy
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		dst := home + "/" + e.Name()
		if _, err := r.Lstat(dst); err == nil {
			continue
		}
		data, err := r.ReadFile("etc/skel/" + e.Name())
		if err != nil {
			return fmt.Errorf("read /etc/skel/%s in the guest: %w", e.Name(), err)
		}
		if err := replaceFile(r, dst, data, 0o644, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// resolveIn stats p inside r the way the guest would see it: symlinks are followed, and
// absolute targets are taken relative to the guest's root (os.Root refuses those).
func resolveIn(r *os.Root, p string) (fs.FileInfo, error) {
	todo := strings.Split(strings.Trim(p, "/"), "/")
	var done []string
	for links := 0; len(todo) > 0; {
		part := todo[0]
		todo = todo[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cur := strings.Join(append(done, part), "/")
		fi, err := r.Lstat(cur)
		if err != nil {
			return nil, err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, part)
			continue
		}
		if links++; links > 40 {
			return nil, fmt.Errorf("/%s: too many levels of symbolic links", p)
		}
		target, err := r.Readlink(cur)
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(target, "/") {
			done = nil
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	if len(done) == 0 {
		return r.Lstat(".")
	}
	return r.Lstat(strings.Join(done, "/"))
}
