package sbom

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"testing/fstest"

	"github.com/google/osv-scalibr/extractor"
	apkmeta "github.com/google/osv-scalibr/extractor/filesystem/os/apk/metadata"
	dpkgmeta "github.com/google/osv-scalibr/extractor/filesystem/os/dpkg/metadata"
	"github.com/google/osv-scalibr/extractor/filesystem/os/osrelease"
	rpmmeta "github.com/google/osv-scalibr/extractor/filesystem/os/rpm/metadata"
	"github.com/google/osv-scalibr/purl"
	digest "github.com/opencontainers/go-digest"
)

// maxSymlinks bounds the symlinks followed resolving one path, as Linux
// does (40).
const maxSymlinks = 40

var errSymlinkLoop = errors.New("symlink loop")

// view is the composed file system of an image, as far as the inventory
// needs it.
type view struct {
	files    map[string]fileEntry
	links    map[string]string
	releases map[string][]byte
}

type fileEntry struct {
	layer digest.Digest
	pkgs  []*extractor.Package
}

// hide deletes from the view what a layer hides of the layers below: the
// paths it writes a non-directory at or whites out, with everything under
// them, and everything under its opaque directories. One pass over the
// view, looking up each path's ancestors: O(view × depth) per layer.
func (v *view) hide(rec *layerRecord) {
	gone := make(map[string]bool, len(rec.Others)+len(rec.Whiteouts)+len(rec.Files)+len(rec.Symlinks)+len(rec.OSRelease))
	for _, set := range [][]string{rec.Others, rec.Whiteouts} {
		for _, p := range set {
			gone[p] = true
		}
	}
	for p := range rec.Files {
		gone[p] = true
	}
	for p := range rec.Symlinks {
		gone[p] = true
	}
	for p := range rec.OSRelease {
		gone[p] = true
	}
	opaque := make(map[string]bool, len(rec.Opaque))
	for _, p := range rec.Opaque {
		opaque[p] = true
	}
	hidden := func(k string) bool {
		if gone[k] {
			return true
		}
		for dir := k; dir != ""; {
			i := strings.LastIndexByte(dir, '/')
			if i < 0 {
				dir = ""
			} else {
				dir = dir[:i]
			}
			if gone[dir] && dir != "" || opaque[dir] {
				return true
			}
		}
		return false
	}
	for k := range v.files {
		if hidden(k) {
			delete(v.files, k)
		}
	}
	for k := range v.links {
		if hidden(k) {
			delete(v.links, k)
		}
	}
	for k := range v.releases {
		if hidden(k) {
			delete(v.releases, k)
		}
	}
}

// compose applies the layers' records in order and fills inv.
func compose(inv *Inventory, layers []Layer, recs []*layerRecord) {
	v := view{files: map[string]fileEntry{}, links: map[string]string{}, releases: map[string][]byte{}}
	for i, rec := range recs {
		d := layers[i].Digest
		for _, n := range rec.Notes {
			inv.Notes = append(inv.Notes, fmt.Sprintf("layer %s: %s", d, n))
		}
		// Whiteouts, opaque directories and the layer's own paths hide
		// what lies below.
		v.hide(rec)
		for p, t := range rec.Symlinks {
			v.links[p] = t
		}
		for p, c := range rec.OSRelease {
			v.releases[p] = c
		}
		for p, pkgs := range rec.Files {
			v.files[p] = fileEntry{layer: d, pkgs: pkgs}
		}
	}

	release := v.osRelease(inv)
	inv.OS = OS{
		ID:              release["ID"],
		VersionID:       release["VERSION_ID"],
		VersionCodename: release["VERSION_CODENAME"],
		PrettyName:      release["PRETTY_NAME"],
	}

	type found struct {
		pkg *extractor.Package
		out Package
	}
	var all []found
	for p, e := range v.files {
		for _, pk := range e.pkgs {
			c := withRelease(pk, release)
			out := Package{
				Name:      c.Name,
				Version:   c.Version,
				Type:      packageType(c.PURLType),
				Ecosystem: c.Ecosystem().String(),
				Path:      "/" + p,
				Layer:     e.layer,
			}
			if u := c.PURL(); u != nil {
				out.PURL = u.String()
			}
			switch m := c.Metadata.(type) {
			case *dpkgmeta.Metadata:
				if m.SourceName != "" && m.SourceName != c.Name {
					out.Source = m.SourceName
				}
			case *apkmeta.Metadata:
				if m.OriginName != "" && m.OriginName != c.Name {
					out.Source = m.OriginName
				}
			}
			if out.Ecosystem == "Go" && out.Name == "go" {
				// The toolchain a binary was built with: OSV's Go
				// database calls its standard library "stdlib".
				out.Name = "stdlib"
			}
			all = append(all, found{c, out})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i].out, all[j].out
		if a.Ecosystem != b.Ecosystem {
			return a.Ecosystem < b.Ecosystem
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		if a.Version != b.Version {
			return a.Version < b.Version
		}
		return a.Path < b.Path
	})
	for _, f := range all {
		inv.Packages = append(inv.Packages, f.out)
		inv.pkgs = append(inv.pkgs, f.pkg)
	}
}

// osRelease finds the image's os-release (etc/os-release, else
// usr/lib/os-release, through symlinks) and parses it with scalibr's
// parser; nil when there is none.
func (v *view) osRelease(inv *Inventory) map[string]string {
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		real, err := v.resolve(p)
		if err != nil {
			inv.Notes = append(inv.Notes, fmt.Sprintf("/%s: %v", p, err))
			continue
		}
		content, ok := v.releases[real]
		if !ok {
			if real != p {
				inv.Notes = append(inv.Notes, fmt.Sprintf("/%s: links to /%s, not an os-release file of the image", p, real))
			}
			continue
		}
		m, err := osrelease.GetOSRelease(fstest.MapFS{"etc/os-release": &fstest.MapFile{Data: content}})
		if err != nil {
			inv.Notes = append(inv.Notes, fmt.Sprintf("/%s: %v", p, err))
			continue
		}
		return m
	}
	return nil
}

// resolve follows the symlinks of the view in every component of p.
func (v *view) resolve(p string) (string, error) {
	parts := strings.Split(p, "/")
	cur, hops := "", 0
	for i := 0; i < len(parts); i++ {
		next := path.Join(cur, parts[i])
		target, ok := v.links[next]
		if !ok {
			cur = next
			continue
		}
		hops++
		if hops > maxSymlinks {
			return "", fmt.Errorf("%w (more than %d symlinks)", errSymlinkLoop, maxSymlinks)
		}
		base := cur
		if strings.HasPrefix(target, "/") {
			base = ""
		}
		rest := path.Join(append([]string{base, target}, parts[i+1:]...)...)
		parts = strings.Split(cleanPath(rest), "/")
		cur, i = "", -1
	}
	return cur, nil
}

// withRelease returns pk with the image's OS release set on its metadata,
// as the OS extractors set it when they find an os-release next to the
// database: scalibr's ecosystem and package URL mapping reads it there.
func withRelease(pk *extractor.Package, m map[string]string) *extractor.Package {
	c := *pk
	switch md := pk.Metadata.(type) {
	case *apkmeta.Metadata:
		n := *md
		n.OSID, n.OSVersionID = m["ID"], m["VERSION_ID"]
		c.Metadata = &n
	case *dpkgmeta.Metadata:
		n := *md
		n.OSID, n.OSVersionCodename, n.OSVersionID = m["ID"], m["VERSION_CODENAME"], m["VERSION_ID"]
		c.Metadata = &n
	case *rpmmeta.Metadata:
		n := *md
		n.OSName, n.OSPrettyName, n.OSID, n.OSVersionID, n.OSBuildID = m["NAME"], m["PRETTY_NAME"], m["ID"], m["VERSION_ID"], m["BUILD_ID"]
		// The rpm extractor does not read CPE_NAME, but scalibr's mapping
		// takes RHEL's release from it ("Red Hat:enterprise_linux:9::baseos").
		n.OSCPEName = m["CPE_NAME"]
		c.Metadata = &n
	}
	return &c
}

// packageType names the kind of a package by its PURL type.
func packageType(purlType string) string {
	if purlType == purl.TypeGolang {
		return "go"
	}
	return purlType
}
