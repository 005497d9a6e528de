// Package vulndb is gantry's offline vulnerability database: OSV
// advisories (https://ossf.github.io/osv-schema/) imported from OSV exports
// (a zip such as OSV's per-ecosystem all.zip, or a directory tree such as
// golang.org/x/vulndb's data/osv) into gantry's SQLite database, and a
// Matcher that finds the advisories affecting a set of packages.
//
// An import parses and validates every file before it writes anything, then
// merges the advisories by ID in one write transaction: a newer `modified`
// replaces the stored advisory, an older or equal one is kept. A file that
// does not parse or validate, or that exceeds one of the limits (Limits),
// fails the whole import and leaves the database as it was. Affected entries
// of an ecosystem without a known version ordering are left out and
// reported in ImportResult.Ignored.
//
// Versions are ordered by each ecosystem's rules
// (github.com/google/osv-scalibr/semantic), never as strings. Severities
// come from the advisory's CVSS vectors (scored with
// github.com/pandatix/go-cvss), else from the advisory's own severity
// words.
//
// Tables (internal/db/migrations/070_vulndb.sql):
//
//	vuln_advisories  one row per advisory: ID, times, summary, aliases, severity
//	vuln_affected    its affected entries (ecosystem, name, ranges, versions),
//	                 indexed by (ecosystem_base, name)
//	vuln_aliases     alias -> advisory ID (Advisory looks up CVE IDs there)
//	vulndb_meta      one row: generation, last import time and source
package vulndb
