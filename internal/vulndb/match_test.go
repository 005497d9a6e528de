package vulndb_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/errdefs"
	"github.com/gantryhq/gantry/internal/testenv"
	"github.com/gantryhq/gantry/internal/vulndb"
)

// fixtures are OSV files of several ecosystems, shaped like the real
// exports of each.
var fixtures = map[string]string{
	"alpine/v3.18/ALPINE-CVE-2023-0001.json": `{
  "id": "ALPINE-CVE-2023-0001", "modified": "2024-01-02T03:04:05Z", "published": "2023-06-01T00:00:00Z",
  "aliases": ["CVE-2023-0001"], "summary": "busybox overflow",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:N"}],
  "affected": [{"package": {"ecosystem": "Alpine:v3.18", "name": "busybox"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.36.1-r10"}]}]}]
}`,
	"debian/DSA-0001.json": `{
  "id": "DSA-0001", "modified": "2024-01-02T03:04:05.123Z", "aliases": ["CVE-2023-0002"],
  "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u1"}]}]}]
}`,
	"debian/DEBIAN-EPOCH.json": `{
  "id": "DEBIAN-EPOCH", "modified": "2024-01-02T03:04:05Z",
  "affected": [{"package": {"ecosystem": "Debian", "name": "foo"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1:1.0"}]}]}]
}`,
	"npm/GHSA-npm1.json": `{
  "id": "GHSA-npm1", "modified": "2024-01-02T03:04:05Z", "aliases": ["CVE-2023-0003"], "summary": "lodash prototype pollution",
  "affected": [{"package": {"ecosystem": "npm", "name": "lodash"},
    "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.10.0"}]}]}],
  "database_specific": {"severity": "MODERATE", "cwe_ids": ["CWE-1321"]}
}`,
	"npm/GHSA-npm2.json": `{
  "id": "GHSA-npm2", "modified": "2024-01-02T03:04:05Z", "summary": "malicious versions",
  "affected": [{"package": {"ecosystem": "npm", "name": "evil"}, "versions": ["1.0.0", "1.0.1"]}]
}`,
	"pypi/PYSEC-1.json": `{
  "id": "PYSEC-1", "modified": "2024-01-02T03:04:05Z",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:L/I:N/A:N"},
               {"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}],
  "affected": [{"package": {"ecosystem": "PyPI", "name": "Requests"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "2.0.0"}, {"last_affected": "2.31.0"}]}]}]
}`,
	"maven/GHSA-log4j.json": `{
  "id": "GHSA-log4j", "modified": "2024-01-02T03:04:05Z", "aliases": ["CVE-2021-44228"],
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"}],
  "affected": [{"package": {"ecosystem": "Maven", "name": "org.apache.logging.log4j:log4j-core"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "2.0-beta9"}, {"fixed": "2.15.0"}]}]}],
  "database_specific": {"severity": "LOW"}
}`,
	"rocky/RLSA-1.json": `{
  "id": "RLSA-1", "modified": "2024-01-02T03:04:05Z",
  "affected": [{"package": {"ecosystem": "Rocky Linux:9", "name": "openssl"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1:3.0.7-17.el9"}]}],
    "ecosystem_specific": {"severity": "Important"}}]
}`,
	"go/GO-TEST-1.json": `{
  "id": "GO-TEST-1", "modified": "2024-01-02T03:04:05Z",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/not-a-vector"}],
  "database_specific": {"severity": "HIGH"},
  "affected": [
    {"package": {"ecosystem": "Go", "name": "example.com/mod"},
     "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.2.0"}, {"introduced": "1.3.0"}, {"fixed": "1.3.5"}]},
                {"type": "GIT", "repo": "https://example.com/mod", "events": [{"introduced": "abc"}, {"fixed": "def"}]}]},
    {"package": {"ecosystem": "Go", "name": "example.com/mod"},
     "ranges": [{"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"fixed": "1.1.0"}]}]}]
}`,
	"go/GO-TEST-STD.json": `{
  "id": "GO-TEST-STD", "modified": "2024-01-02T03:04:05Z",
  "affected": [{"package": {"ecosystem": "Go", "name": "stdlib"},
    "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.20.2"}, {"introduced": "1.21.0-0"}, {"fixed": "1.21.0-rc.3"}]}]}]
}`,
	"go/GO-TEST-LIMIT.json": `{
  "id": "GO-TEST-LIMIT", "modified": "2024-01-02T03:04:05Z",
  "affected": [{"package": {"ecosystem": "Go", "name": "example.com/limited"},
    "ranges": [{"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"limit": "2.0.0"}]}]}]
}`,
	"go/GO-TEST-WITHDRAWN.json": `{
  "id": "GO-TEST-WITHDRAWN", "modified": "2024-01-02T03:04:05Z", "withdrawn": "2024-01-03T00:00:00Z",
  "affected": [{"package": {"ecosystem": "Go", "name": "example.com/mod"},
    "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}]}]}]
}`,
	"other/FOO-1.json": `{
  "id": "FOO-1", "modified": "2024-01-02T03:04:05Z",
  "affected": [{"package": {"ecosystem": "Foo", "name": "x"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]
}`,
	"other/MIXED-1.json": `{
  "id": "MIXED-1", "modified": "2024-01-02T03:04:05Z",
  "affected": [{"package": {"ecosystem": "Foo", "name": "x"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]},
               {"package": {"ecosystem": "npm", "name": "mixed"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "2.0.0"}]}]}]
}`,
	"ubuntu/UBUNTU-CVE-1.json": `{
  "id": "UBUNTU-CVE-1", "modified": "2024-01-02T03:04:05Z",
  "severity": [{"type": "Ubuntu", "score": "medium"}],
  "affected": [{"package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "zlib"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1:1.2.11.dfsg-2ubuntu9.2"}]}]}]
}`,
	"README.md": "not OSV",
}

func importFixtures(t *testing.T) (*vulndb.DB, vulndb.ImportResult) {
	t.Helper()
	v := newDB(t)
	res, err := v.ImportDir(context.Background(), testenv.WriteTree(t, fixtures), "dir:fixtures")
	if err != nil {
		t.Fatal(err)
	}
	return v, res
}

func TestImportFixtures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	v, res := importFixtures(t)
	if res.Files != 15 || res.Added != 14 || res.Updated != 0 || res.Unchanged != 0 {
		t.Errorf("result %+v, want 15 files, 14 added", res)
	}
	var reasons []string
	for _, ig := range res.Ignored {
		reasons = append(reasons, ig.ID+": "+ig.Reason)
	}
	want := []string{
		`FOO-1: affected[0]: ecosystem "Foo" is not supported`,
		`MIXED-1: affected[0]: ecosystem "Foo" is not supported (stored with its other affected entries)`,
	}
	if strings.Join(reasons, "\n") != strings.Join(want, "\n") {
		t.Errorf("ignored:\n%s\nwant:\n%s", strings.Join(reasons, "\n"), strings.Join(want, "\n"))
	}
	if res.Ecosystems["Go"] != 4 || res.Ecosystems["npm"] != 3 || res.Ecosystems["Foo"] != 0 {
		t.Errorf("ecosystems %v", res.Ecosystems)
	}
	st, err := v.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Advisories != 14 || st.Source != "dir:fixtures" || st.LastUpdate.IsZero() {
		t.Errorf("stats %+v", st)
	}
	if len(st.Ecosystems) == 0 || st.Ecosystems[0] != (vulndb.EcosystemCount{Ecosystem: "Go", Advisories: 4}) {
		t.Errorf("ecosystems %+v", st.Ecosystems)
	}
	if g, err := v.Generation(ctx); err != nil || g != 1 {
		t.Errorf("generation %d, %v; want 1", g, err)
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	v, _ := importFixtures(t)
	m, err := v.Matcher(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		id, fixed string
		sev       vulndb.Severity
		source    string
	}
	none := []want(nil)
	for _, c := range []struct {
		name string
		pkg  vulndb.Package
		want []want
	}{
		{"alpine vulnerable", vulndb.Package{"Alpine:v3.18", "busybox", "1.36.1-r9"}, []want{{"ALPINE-CVE-2023-0001", "1.36.1-r10", vulndb.SeverityHigh, "cvss_v3"}}},
		{"alpine r10 > r9 (fixed)", vulndb.Package{"Alpine:v3.18", "busybox", "1.36.1-r10"}, none},
		{"alpine r11", vulndb.Package{"Alpine:v3.18", "busybox", "1.36.1-r11"}, none},
		{"alpine other release", vulndb.Package{"Alpine:v3.17", "busybox", "1.36.1-r9"}, none},
		{"debian vulnerable", vulndb.Package{"Debian:12", "openssl", "3.0.9-1"}, []want{{"DSA-0001", "3.0.11-1~deb12u1", vulndb.SeverityUnknown, "none"}}},
		{"debian tilde sorts before", vulndb.Package{"Debian:12", "openssl", "3.0.11-1~deb12u0"}, []want{{"DSA-0001", "3.0.11-1~deb12u1", vulndb.SeverityUnknown, "none"}}},
		{"debian fixed", vulndb.Package{"Debian:12", "openssl", "3.0.11-1~deb12u1"}, none},
		{"debian above fix", vulndb.Package{"Debian:12", "openssl", "3.0.11-1"}, none},
		{"debian other release", vulndb.Package{"Debian:11", "openssl", "3.0.9-1"}, none},
		{"debian entry without release, epoch 0 < 1", vulndb.Package{"Debian:11", "foo", "2.0"}, []want{{"DEBIAN-EPOCH", "1:1.0", vulndb.SeverityUnknown, "none"}}},
		{"debian epoch fixed", vulndb.Package{"Debian:12", "foo", "1:1.0"}, none},
		{"npm vulnerable", vulndb.Package{"npm", "lodash", "1.9.0"}, []want{{"GHSA-npm1", "1.10.0", vulndb.SeverityMedium, "advisory"}}},
		{"npm 1.10.0 > 1.9.0", vulndb.Package{"npm", "lodash", "1.10.0"}, none},
		{"npm explicit versions", vulndb.Package{"npm", "evil", "1.0.1"}, []want{{"GHSA-npm2", "", vulndb.SeverityUnknown, "none"}}},
		{"npm not in versions", vulndb.Package{"npm", "evil", "1.0.2"}, none},
		{"npm partly supported advisory", vulndb.Package{"npm", "mixed", "1.0.0"}, []want{{"MIXED-1", "2.0.0", vulndb.SeverityUnknown, "none"}}},
		{"pypi normalised name, last_affected", vulndb.Package{"PyPI", "requests", "2.31.0"}, []want{{"PYSEC-1", "", vulndb.SeverityCritical, "cvss_v4"}}},
		{"pypi PEP 503", vulndb.Package{"PyPI", "REQUESTS", "2.10.0"}, []want{{"PYSEC-1", "", vulndb.SeverityCritical, "cvss_v4"}}},
		{"pypi after last_affected", vulndb.Package{"PyPI", "requests", "2.31.1"}, none},
		{"pypi before introduced", vulndb.Package{"PyPI", "requests", "1.9"}, none},
		{"maven vulnerable, 2.9 < 2.15", vulndb.Package{"Maven", "org.apache.logging.log4j:log4j-core", "2.9.0"}, []want{{"GHSA-log4j", "2.15.0", vulndb.SeverityCritical, "cvss_v3"}}},
		{"maven fixed", vulndb.Package{"Maven", "org.apache.logging.log4j:log4j-core", "2.15.0"}, none},
		{"maven before introduced", vulndb.Package{"Maven", "org.apache.logging.log4j:log4j-core", "2.0-beta8"}, none},
		{"rocky vulnerable", vulndb.Package{"Rocky Linux:9", "openssl", "1:3.0.7-16.el9"}, []want{{"RLSA-1", "1:3.0.7-17.el9", vulndb.SeverityHigh, "advisory"}}},
		{"rocky fixed", vulndb.Package{"Rocky Linux:9", "openssl", "1:3.0.7-17.el9"}, none},
		{"go two entries, one finding, lowest fix", vulndb.Package{"Go", "example.com/mod", "v1.0.5"}, []want{{"GO-TEST-1", "1.1.0", vulndb.SeverityHigh, "advisory"}}},
		{"go second range", vulndb.Package{"Go", "example.com/mod", "v1.3.1"}, []want{{"GO-TEST-1", "1.3.5", vulndb.SeverityHigh, "advisory"}}},
		{"go between ranges", vulndb.Package{"Go", "example.com/mod", "v1.2.0"}, none},
		{"go pseudo-version", vulndb.Package{"Go", "example.com/mod", "v0.0.0-20230101000000-abcdefabcdef"}, []want{{"GO-TEST-1", "1.2.0", vulndb.SeverityHigh, "advisory"}}},
		{"go (devel)", vulndb.Package{"Go", "example.com/mod", "(devel)"}, none},
		{"go limit", vulndb.Package{"Go", "example.com/limited", "v1.5.0"}, []want{{"GO-TEST-LIMIT", "", vulndb.SeverityUnknown, "none"}}},
		{"go at limit", vulndb.Package{"Go", "example.com/limited", "v2.0.0"}, none},
		{"stdlib", vulndb.Package{"Go", "stdlib", "go1.20.1"}, []want{{"GO-TEST-STD", "1.20.2", vulndb.SeverityUnknown, "none"}}},
		{"stdlib fixed", vulndb.Package{"Go", "stdlib", "go1.20.2"}, none},
		{"stdlib rc", vulndb.Package{"Go", "stdlib", "go1.21rc2"}, []want{{"GO-TEST-STD", "1.21.0-rc.3", vulndb.SeverityUnknown, "none"}}},
		{"stdlib release after rc", vulndb.Package{"Go", "stdlib", "go1.21"}, none},
		{"ubuntu release prefix", vulndb.Package{"Ubuntu:22.04", "zlib", "1:1.2.11.dfsg-2ubuntu9"}, []want{{"UBUNTU-CVE-1", "1:1.2.11.dfsg-2ubuntu9.2", vulndb.SeverityMedium, "advisory"}}},
		{"ubuntu fixed", vulndb.Package{"Ubuntu:22.04", "zlib", "1:1.2.11.dfsg-2ubuntu9.2"}, none},
		{"ubuntu other release", vulndb.Package{"Ubuntu:20.04", "zlib", "1:1.2.11.dfsg-2ubuntu1"}, none},
		{"unknown package", vulndb.Package{"npm", "nothing", "1.0.0"}, none},
		{"unparsable version", vulndb.Package{"PyPI", "requests", "not a version!"}, none},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := m.Match([]vulndb.Package{c.pkg})
			if len(got) != len(c.want) {
				t.Fatalf("Match(%v) = %+v, want %+v", c.pkg, got, c.want)
			}
			for i, w := range c.want {
				f := got[i]
				if f.ID != w.id || f.FixedVersion != w.fixed || f.Severity != w.sev || f.SeveritySource != w.source || f.Package != c.pkg {
					t.Errorf("finding %+v, want %+v", f, w)
				}
			}
		})
	}
}

func TestMatchSortedAndScored(t *testing.T) {
	t.Parallel()
	v, _ := importFixtures(t)
	m, err := v.Matcher(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := m.Match([]vulndb.Package{
		{"npm", "lodash", "1.0.0"},
		{"Debian:12", "openssl", "3.0.9-1"},
		{"Maven", "org.apache.logging.log4j:log4j-core", "2.14.1"},
		{"Alpine:v3.18", "busybox", "1.36.1-r1"},
		{"PyPI", "requests", "2.20.0"},
	})
	var ids []string
	for _, f := range got {
		ids = append(ids, f.ID)
	}
	if want := "GHSA-log4j PYSEC-1 ALPINE-CVE-2023-0001 GHSA-npm1 DSA-0001"; strings.Join(ids, " ") != want {
		t.Errorf("order %s, want %s", strings.Join(ids, " "), want)
	}
	if got[0].Score != 10.0 || got[0].Vector != "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H" || got[0].Aliases[0] != "CVE-2021-44228" {
		t.Errorf("log4j finding %+v", got[0])
	}
	if got[1].Score != 9.3 {
		t.Errorf("CVSS v4 score %v, want 9.3 (v4 preferred over v3)", got[1].Score)
	}
	if got[2].Score != 8.1 || got[2].Summary != "busybox overflow" || got[2].Modified.IsZero() {
		t.Errorf("alpine finding %+v", got[2])
	}
	if m2, err := v.Matcher(context.Background()); err != nil || m2 != m || m.Version() != 1 {
		t.Errorf("second Matcher: %p %v, version %d; want the cached snapshot of generation 1", m2, err, m.Version())
	}
}

func TestAdvisory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	v, _ := importFixtures(t)
	for _, key := range []string{"ALPINE-CVE-2023-0001", "CVE-2023-0001"} {
		a, err := v.Advisory(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if a.ID != "ALPINE-CVE-2023-0001" || a.Severity != vulndb.SeverityHigh || a.Score != 8.1 || a.SeveritySource != "cvss_v3" ||
			a.Published.IsZero() || len(a.Aliases) != 1 || len(a.Affected) != 1 {
			t.Errorf("Advisory(%s) = %+v", key, a)
		}
		if want := (vulndb.Affected{Ecosystem: "Alpine:v3.18", Name: "busybox", Ranges: "introduced 0, fixed 1.36.1-r10"}); a.Affected[0] != want {
			t.Errorf("affected %+v, want %+v", a.Affected[0], want)
		}
	}
	a, err := v.Advisory(ctx, "GO-TEST-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Affected) != 2 || a.Affected[0].Ranges != "introduced 0, fixed 1.2.0, introduced 1.3.0, fixed 1.3.5" {
		t.Errorf("GO-TEST-1 affected %+v (GIT range left out)", a.Affected)
	}
	if a, err := v.Advisory(ctx, "GHSA-npm2"); err != nil || a.Affected[0].Ranges != "versions 1.0.0, 1.0.1" {
		t.Errorf("GHSA-npm2: %+v, %v", a, err)
	}
	if a, err := v.Advisory(ctx, "GO-TEST-WITHDRAWN"); err != nil || a.Withdrawn.IsZero() {
		t.Errorf("GO-TEST-WITHDRAWN: %+v, %v", a, err)
	}
	_, err = v.Advisory(ctx, "CVE-1999-0001")
	if !errors.Is(err, errdefs.ErrNotFound) || err.Error() != "advisory CVE-1999-0001 not found" {
		t.Errorf("unknown advisory: %v", err)
	}
}

func TestParseSeverity(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want vulndb.Severity
		rank int
	}{
		{"critical", vulndb.SeverityCritical, 4}, {"HIGH", vulndb.SeverityHigh, 3}, {"Moderate", vulndb.SeverityMedium, 2},
		{"medium", vulndb.SeverityMedium, 2}, {" low ", vulndb.SeverityLow, 1}, {"unknown", vulndb.SeverityUnknown, 0},
	} {
		got, err := vulndb.ParseSeverity(c.in)
		if err != nil || got != c.want || got.Rank() != c.rank {
			t.Errorf("ParseSeverity(%q) = %q (rank %d), %v; want %q (rank %d)", c.in, got, got.Rank(), err, c.want, c.rank)
		}
	}
	_, err := vulndb.ParseSeverity("severe")
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "critical") {
		t.Errorf("ParseSeverity(severe): %v", err)
	}
}
