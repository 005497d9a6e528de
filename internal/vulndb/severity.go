package vulndb

import (
	"fmt"
	"strings"

	cvss30 "github.com/pandatix/go-cvss/30"
	cvss31 "github.com/pandatix/go-cvss/31"
	cvss40 "github.com/pandatix/go-cvss/40"
)

// Severity is an advisory's severity level. Levels are ordered (Rank):
// SeverityUnknown < SeverityLow < SeverityMedium < SeverityHigh <
// SeverityCritical.
type Severity string

// The severity levels.
const (
	SeverityUnknown  Severity = "unknown"
	SeverityLow      Severity = "low"
	SeverityMedium   Severity = "medium"
	SeverityHigh     Severity = "high"
	SeverityCritical Severity = "critical"
)

// Where a severity comes from (Finding.SeveritySource,
// Advisory.SeveritySource).
const (
	SourceCVSSv4   = "cvss_v4"  // a CVSS v4.0 vector, scored
	SourceCVSSv3   = "cvss_v3"  // a CVSS v3.0 or v3.1 vector, scored
	SourceAdvisory = "advisory" // the advisory's own severity word
	SourceNone     = "none"     // no severity known
)

// ParseSeverity parses a severity name, case-insensitively: unknown, low,
// medium (or moderate), high, critical. Anything else is an error in the
// category errdefs.ErrInvalid.
func ParseSeverity(s string) (Severity, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "unknown":
		return SeverityUnknown, nil
	case "low":
		return SeverityLow, nil
	case "medium", "moderate":
		return SeverityMedium, nil
	case "high":
		return SeverityHigh, nil
	case "critical":
		return SeverityCritical, nil
	}
	return SeverityUnknown, fmt.Errorf("severity %q: want one of unknown, low, medium (or moderate), high, critical%.0w", s, ErrInvalid)
}

// Rank orders the levels: 0 for unknown (and anything not a level) up to 4
// for critical.
func (s Severity) Rank() int {
	switch s {
	case SeverityLow:
		return 1
	case SeverityMedium:
		return 2
	case SeverityHigh:
		return 3
	case SeverityCritical:
		return 4
	}
	return 0
}

// severityOfScore rates a CVSS base score: critical from 9.0, high from
// 7.0, medium from 4.0, low above 0.
func severityOfScore(score float64) Severity {
	switch {
	case score >= 9.0:
		return SeverityCritical
	case score >= 7.0:
		return SeverityHigh
	case score >= 4.0:
		return SeverityMedium
	case score > 0:
		return SeverityLow
	}
	return SeverityUnknown
}

// severityOfWord maps the severity words advisories use (GHSA's
// database_specific.severity, Ubuntu's priorities, Red Hat's impacts) to a
// level; ok is false for a word that names none (untriaged, unknown, ...).
func severityOfWord(w string) (Severity, bool) {
	switch strings.ToLower(strings.TrimSpace(w)) {
	case "critical":
		return SeverityCritical, true
	case "high", "important":
		return SeverityHigh, true
	case "medium", "moderate":
		return SeverityMedium, true
	case "low", "negligible":
		return SeverityLow, true
	}
	return SeverityUnknown, false
}

// cvssScore scores a CVSS vector of an OSV severity entry of type CVSS_V4
// or CVSS_V3 (v3.0 or v3.1 by the vector's prefix).
func cvssScore(typ, vector string) (float64, error) {
	switch typ {
	case "CVSS_V4":
		c, err := cvss40.ParseVector(vector)
		if err != nil {
			return 0, err
		}
		return c.Score(), nil
	case "CVSS_V3":
		switch {
		case strings.HasPrefix(vector, "CVSS:3.1/"):
			c, err := cvss31.ParseVector(vector)
			if err != nil {
				return 0, err
			}
			return c.BaseScore(), nil
		case strings.HasPrefix(vector, "CVSS:3.0/"):
			c, err := cvss30.ParseVector(vector)
			if err != nil {
				return 0, err
			}
			return c.BaseScore(), nil
		}
		return 0, fmt.Errorf("not a CVSS:3.0 or CVSS:3.1 vector")
	}
	return 0, fmt.Errorf("severity type %q is not scored", typ)
}
