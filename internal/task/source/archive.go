package source

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Extract unpacks a gzipped tar (an uploaded quick-run context) into
// dir, the run's work directory. Every entry is created through an os.Root of
// dir, so nothing is written outside it, whatever symlinks the archive holds.
// Symlinks must lead inside dir: one that is absolute or climbs out (through
// .. or through other symlinks, however chained) is refused, as is an entry
// written through such a path; symlinks are checked again once the whole
// archive is out, since a later entry can change where an earlier one leads.
// Hard links, devices and fifos are skipped. Errors name the archive entry;
// on error dir is left empty.
func Extract(path, dir string) (err error) {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	defer func() {
		if err != nil {
			if rerr := emptyRoot(root); rerr != nil {
				err = errors.Join(err, fmt.Errorf("emptying the work directory: %w", rerr))
			}
		}
	}()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	var links []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the archive: %w", err)
		}
		name, err := extractEntry(root, tr, h)
		if err != nil {
			return fmt.Errorf("archive entry %q: %w", h.Name, err)
		}
		if h.Typeflag == tar.TypeSymlink {
			links = append(links, name)
		}
	}
	for _, name := range links {
		if err := checkSymlink(root, name); err != nil {
			return fmt.Errorf("archive entry %q: %w", name, err)
		}
	}
	return nil
}

// extractEntry creates one archive entry in root and returns its cleaned name.
func extractEntry(root *os.Root, r io.Reader, h *tar.Header) (string, error) {
	name := filepath.Clean(filepath.FromSlash(h.Name))
	if name == "." {
		return name, nil
	}
	if !filepath.IsLocal(name) {
		return name, fmt.Errorf("the path %w", errOutside)
	}
	parent := filepath.Dir(name)
	if err := resolveInside(root, parent); errors.Is(err, errOutside) {
		return name, fmt.Errorf("the path %w through a symlink", errOutside)
	} else if err != nil {
		return name, err
	}
	switch h.Typeflag {
	case tar.TypeDir:
		return name, root.MkdirAll(name, 0o755)
	case tar.TypeReg:
		if err := root.MkdirAll(parent, 0o755); err != nil {
			return name, err
		}
		if err := removeSymlink(root, name); err != nil {
			return name, err
		}
		return name, writeFile(root, name, r, os.FileMode(h.Mode)&0o777)
	case tar.TypeSymlink:
		if err := root.MkdirAll(parent, 0o755); err != nil {
			return name, err
		}
		if err := root.Symlink(h.Linkname, name); err != nil {
			return name, err
		}
		return name, checkSymlink(root, name)
	}
	return name, nil
}

// Copy copies a local folder context into dst (regular files, dirs and
// symlinks), reading through an os.Root of src and writing through one of
// dst. Symlinks must lead inside the copy, as in Extract; on error dst
// is left empty.
func Copy(src, dst string) (err error) {
	from, err := os.OpenRoot(src)
	if err != nil {
		return err
	}
	defer from.Close()
	to, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer to.Close()
	defer func() {
		if err != nil {
			if rerr := emptyRoot(to); rerr != nil {
				err = errors.Join(err, fmt.Errorf("emptying the work directory: %w", rerr))
			}
		}
	}()
	return fs.WalkDir(from.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := filepath.FromSlash(p)
		switch {
		case d.IsDir():
			return to.MkdirAll(name, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := from.Readlink(name)
			if err != nil {
				return err
			}
			if err := to.Symlink(link, name); err != nil {
				return err
			}
			if err := checkSymlink(to, name); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			return nil
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			in, err := from.Open(name)
			if err != nil {
				return err
			}
			defer in.Close()
			return writeFile(to, name, in, fi.Mode().Perm())
		}
		return nil
	})
}

// writeFile creates (or truncates) name in root with r's content.
func writeFile(root *os.Root, name string, r io.Reader, perm os.FileMode) error {
	out, err := root.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, r)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// removeSymlink removes name when it is a symlink, so that a file replaces it
// instead of being written where it leads.
func removeSymlink(root *os.Root, name string) error {
	fi, err := root.Lstat(name)
	if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		return nil
	}
	return root.Remove(name)
}

// checkSymlink refuses the symlink name in root when it leads outside root.
func checkSymlink(root *os.Root, name string) error {
	fi, err := root.Lstat(name)
	if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		return err // replaced by a later entry: nothing to check
	}
	link, err := root.Readlink(name)
	if err != nil {
		return err
	}
	if err := resolveInside(root, name); errors.Is(err, errOutside) {
		return fmt.Errorf("symlink to %q %w", link, errOutside)
	} else if err != nil {
		return fmt.Errorf("symlink to %q: %w", link, err)
	}
	return nil
}

// errOutside is a path or symlink that leads outside the work directory.
var errOutside = errors.New("leads outside the work directory")

// maxSymlinks is how many symlinks resolveInside follows for one path, as
// Linux does.
const maxSymlinks = 40

// resolveInside follows the path name (relative to root) component by
// component as the kernel would, symlinks included, and fails with errOutside
// when it leads outside root (by .. or an absolute symlink). Components that
// do not exist yet resolve lexically.
func resolveInside(root *os.Root, name string) error {
	var done []string
	todo := strings.Split(filepath.ToSlash(name), "/")
	for hops := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) == 0 {
				return errOutside
			}
			done = done[:len(done)-1]
			continue
		}
		p := filepath.Join(append(done, c)...)
		fi, err := root.Lstat(p)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, c)
			continue
		}
		if hops++; hops > maxSymlinks {
			return fmt.Errorf("more than %d symlinks in a row", maxSymlinks)
		}
		link, err := root.Readlink(p)
		if err != nil {
			return err
		}
		if filepath.IsAbs(link) {
			return errOutside
		}
		todo = append(strings.Split(filepath.ToSlash(link), "/"), todo...)
	}
	return nil
}

// emptyRoot removes everything in root (not following symlinks).
func emptyRoot(root *os.Root) error {
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		errs = append(errs, root.RemoveAll(n))
	}
	return errors.Join(errs...)
}
