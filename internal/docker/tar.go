package docker

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// TarDir writes a tar stream of the contents of dir to w, for BuildImage or
// CopyToContainer. Entries are named relative to dir, in lexical order, owned
// by root (uid/gid 0), with their permission bits (including setuid, setgid
// and sticky), modification times (to the second) and symlinks (not
// followed) preserved. Sockets, pipes and devices are skipped.
//
// Paths matching exclude, in .dockerignore syntax ("*.log", "**/tmp",
// "!keep.log", a directory excludes what is below it), are left out.
func TarDir(w io.Writer, dir string, exclude ...string) error {
	m, err := newMatcher(exclude)
	if err != nil {
		return err
	}
	return tarDir(w, dir, m)
}

// TarBuildContext writes the build context dir to w like the docker CLI
// does: the patterns of dir/.dockerignore are honoured, but the Dockerfile
// (a path inside dir, relative to it; "" means "Dockerfile") and
// .dockerignore are always sent.
func TarBuildContext(w io.Writer, dir, dockerfile string) error {
	patterns, err := readIgnoreFile(filepath.Join(dir, ".dockerignore"))
	if err != nil {
		return err
	}
	if len(patterns) > 0 {
		if dockerfile == "" {
			dockerfile = "Dockerfile"
		}
		patterns = append(patterns, "!"+filepath.ToSlash(filepath.Clean(dockerfile)), "!.dockerignore")
	}
	m, err := newMatcher(patterns)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, ".dockerignore"), err)
	}
	return tarDir(w, dir, m)
}

func tarDir(w io.Writer, dir string, m *matcher) error {
	// WalkDir does not follow a root that is a symlink.
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("archiving %s: %w", dir, err)
	}
	tw := tar.NewWriter(w)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if m.excluded(rel) {
			if d.IsDir() && !m.hasExceptions() {
				return filepath.SkipDir
			}
			// An excluded directory is still walked when a "!" pattern
			// may bring back something below it.
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{
			Name:    rel,
			Mode:    int64(fi.Mode().Perm()),
			ModTime: fi.ModTime().Truncate(time.Second),
		}
		if fi.Mode()&fs.ModeSetuid != 0 {
			hdr.Mode |= 0o4000
		}
		if fi.Mode()&fs.ModeSetgid != 0 {
			hdr.Mode |= 0o2000
		}
		if fi.Mode()&fs.ModeSticky != 0 {
			hdr.Mode |= 0o1000
		}
		switch {
		case fi.Mode().IsRegular():
			hdr.Typeflag = tar.TypeReg
			hdr.Size = fi.Size()
		case fi.IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case fi.Mode()&fs.ModeSymlink != 0:
			hdr.Typeflag = tar.TypeSymlink
			if hdr.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			return nil // socket, pipe, device
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		// Copy exactly the size in the header, even if the file changes.
		n, err := io.Copy(tw, io.LimitReader(f, hdr.Size))
		if err != nil {
			return err
		}
		if n != hdr.Size {
			return fmt.Errorf("%s: file shrank while being archived", p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("archiving %s: %w", dir, err)
	}
	return tw.Close()
}

// TarFiles writes a tar stream of in-memory files to w: keys are slash
// paths relative to the root ("Dockerfile", "etc/app.conf"), values the
// contents. Entries come in lexical order; files get mode 0644, or 0755 when
// they start with "#!" or are ELF executables; the directories they need are
// added with mode 0755. Times are the Unix epoch, so equal maps give equal
// streams.
func TarFiles(w io.Writer, files map[string]string) error {
	names := make([]string, 0, len(files))
	dirs := map[string]bool{}
	for name := range files {
		clean := path.Clean(strings.TrimPrefix(name, "/"))
		if clean == "." || strings.HasPrefix(clean, "../") || clean == ".." {
			return fmt.Errorf("archiving files: bad name %q", name)
		}
		names = append(names, name)
		for d := path.Dir(clean); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	type entry struct {
		name, body string
		dir        bool
	}
	entries := make([]entry, 0, len(names)+len(dirs))
	for d := range dirs {
		entries = append(entries, entry{name: d, dir: true})
	}
	for _, n := range names {
		entries = append(entries, entry{name: path.Clean(strings.TrimPrefix(n, "/")), body: files[n]})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, ModTime: epoch, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e.body))}
		if e.dir {
			hdr = &tar.Header{Name: e.name + "/", ModTime: epoch, Typeflag: tar.TypeDir, Mode: 0o755}
		} else if strings.HasPrefix(e.body, "#!") || strings.HasPrefix(e.body, "\x7fELF") {
			hdr.Mode = 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("archiving files: %w", err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			return fmt.Errorf("archiving files: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("archiving files: %w", err)
	}
	return nil
}

// readIgnoreFile reads the patterns of a .dockerignore file with the
// docker CLI's own parser (comments, blank lines, a leading "/" and "./",
// a byte-order mark); a missing file has none.
func readIgnoreFile(name string) ([]string, error) {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return patterns, nil
}

// matcher decides which paths of a context are left out, with the docker
// CLI's pattern semantics (github.com/moby/patternmatcher).
type matcher struct {
	pm *patternmatcher.PatternMatcher
}

func newMatcher(patterns []string) (*matcher, error) {
	if len(patterns) == 0 {
		return &matcher{}, nil
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("ignore patterns: %w", err)
	}
	return &matcher{pm: pm}, nil
}

// excluded reports whether rel (a slash path relative to the root) is left out.
func (m *matcher) excluded(rel string) bool {
	if m.pm == nil {
		return false
	}
	ok, err := m.pm.MatchesOrParentMatches(filepath.FromSlash(rel))
	return err == nil && ok
}

// hasExceptions reports "!" patterns, which may bring back paths below an
// excluded directory.
func (m *matcher) hasExceptions() bool { return m.pm != nil && m.pm.Exclusions() }
