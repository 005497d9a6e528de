package api

import "time"

// ScanRequest is the body of POST /v1/scans: an image of one of the
// server's registries (Registry + Repository + Reference, or Image naming
// its login server), or of another registry (Image, with Credential when
// the caller has one for it).
type ScanRequest struct {
	Image      string `json:"image,omitempty"`
	Registry   string `json:"registry,omitempty"`
	Repository string `json:"repository,omitempty"`
	// Reference is a tag or a digest.
	Reference  string          `json:"reference,omitempty"`
	Credential *ScanCredential `json:"credential,omitempty"`
}

// ScanCredential is a login for an image of another registry, used for
// that scan only and never stored.
type ScanCredential struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	IdentityToken string `json:"identityToken,omitempty"`
}

// ScanReport is a scan's result, as gantry scan prints it with -o json and
// as attached to the scanned manifest (artifact type
// application/vnd.gantry.scan.report.v1+json).
type ScanReport struct {
	Image  string `json:"image"`
	Digest string `json:"digest"`
	// Status is "scanned", or "unscanned" when no package could be
	// identified: such an image is never reported as clean.
	Status          string              `json:"status"`
	OS              string              `json:"os,omitempty"`
	Packages        int                 `json:"packages"`
	Vulnerabilities []ScanVulnerability `json:"vulnerabilities"`
	Summary         ScanSummary         `json:"summary"`
	Platforms       []ScanPlatform      `json:"platforms,omitempty"`
	ScannedAt       time.Time           `json:"scannedAt"`
	RescannedAt     *time.Time          `json:"rescannedAt,omitempty"`
	// Run is the task run that produced the report.
	Run          string       `json:"run,omitempty"`
	Database     ScanDatabase `json:"database"`
	LayersRead   int          `json:"layersRead"`
	LayersCached int          `json:"layersCached"`
	Notes        []string     `json:"notes,omitempty"`
}

// ScanPlatform is one platform image of a multi-platform index.
type ScanPlatform struct {
	Platform string      `json:"platform"`
	Digest   string      `json:"digest"`
	Status   string      `json:"status"`
	OS       string      `json:"os,omitempty"`
	Packages int         `json:"packages"`
	Summary  ScanSummary `json:"summary"`
}

// ScanVulnerability is one finding.
type ScanVulnerability struct {
	ID           string      `json:"id"`
	Aliases      []string    `json:"aliases"`
	Package      ScanPackage `json:"package"`
	FixedVersion string      `json:"fixedVersion"`
	// Severity is critical, high, medium, low or unknown.
	Severity string `json:"severity"`
	// SeveritySource: cvss_v4 or cvss_v3 (Score is the vector's base
	// score), advisory (the advisory's own severity), or none.
	SeveritySource string   `json:"severitySource"`
	Score          float64  `json:"score,omitempty"`
	Summary        string   `json:"summary,omitempty"`
	Platforms      []string `json:"platforms,omitempty"`
	Allowlisted    bool     `json:"allowlisted,omitempty"`
}

// ScanPackage is a finding's package.
type ScanPackage struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	Ecosystem string `json:"ecosystem"`
	// Source is the package name the advisory gives, when not Name
	// (Debian's source package, Alpine's origin).
	Source string `json:"source,omitempty"`
	Path   string `json:"path,omitempty"`
}

// ScanSummary counts findings by severity; allowlisted ones apart.
type ScanSummary struct {
	Critical    int `json:"critical"`
	High        int `json:"high"`
	Medium      int `json:"medium"`
	Low         int `json:"low"`
	Unknown     int `json:"unknown"`
	Allowlisted int `json:"allowlisted,omitempty"`
}

// ScanDatabase is the vulnerability database a report was matched with.
type ScanDatabase struct {
	Generation int64     `json:"generation"`
	Advisories int       `json:"advisories"`
	LastUpdate time.Time `json:"lastUpdate,omitzero"`
}

// VulnDB is GET /v1/vulndb: the vulnerability database's contents.
type VulnDB struct {
	Advisories int               `json:"advisories"`
	Ecosystems []VulnDBEcosystem `json:"ecosystems"`
	LastUpdate time.Time         `json:"lastUpdate,omitzero"`
	Source     string            `json:"source,omitempty"`
	Generation int64             `json:"generation"`
}

// VulnDBEcosystem counts the advisories of one ecosystem.
type VulnDBEcosystem struct {
	Ecosystem  string `json:"ecosystem"`
	Advisories int    `json:"advisories"`
}

// VulnDBUpdateRequest is the body of POST /v1/vulndb/update: the OCI
// artifact (a zip of OSV files) to import.
type VulnDBUpdateRequest struct {
	Source     string          `json:"source"`
	Credential *ScanCredential `json:"credential,omitempty"`
}

// VulnDBImport is what an import did (POST /v1/vulndb/import, a zip body,
// and POST /v1/vulndb/update).
type VulnDBImport struct {
	Files      int             `json:"files"`
	Added      int             `json:"added"`
	Updated    int             `json:"updated"`
	Unchanged  int             `json:"unchanged"`
	Ignored    []VulnDBIgnored `json:"ignored,omitempty"`
	Ecosystems map[string]int  `json:"ecosystems"`
	Rescan     ScanRescan      `json:"rescan"`
}

// VulnDBIgnored is an advisory (or part of one) an import left out.
type VulnDBIgnored struct {
	File   string `json:"file"`
	ID     string `json:"id,omitempty"`
	Reason string `json:"reason"`
}

// ScanRescan is the rematch of stored SBOMs after an import.
type ScanRescan struct {
	Images   int            `json:"images"`
	Changed  int            `json:"changed"`
	Affected []ScanAffected `json:"affected,omitempty"`
	Seconds  float64        `json:"seconds"`
}

// ScanAffected is an image a rescan found newly affected.
type ScanAffected struct {
	Registry    string   `json:"registry"`
	Repository  string   `json:"repository"`
	Digest      string   `json:"digest"`
	New         []string `json:"new"`
	Quarantined bool     `json:"quarantined,omitempty"`
}

// AllowlistEntry is an advisory accepted until Expires (omitted: never),
// for one registry or (Registry "") all of them.
type AllowlistEntry struct {
	Registry  string     `json:"registry,omitempty"`
	ID        string     `json:"id"`
	Expires   *time.Time `json:"expires,omitempty"`
	Reason    string     `json:"reason,omitempty"`
	CreatedBy string     `json:"createdBy,omitempty"`
	CreatedAt time.Time  `json:"createdAt,omitzero"`
	Expired   bool       `json:"expired,omitempty"`
}

// ScanImpact is GET /v1/scan-impact?id=ADVISORY: the images an advisory
// affects and, through the base-image dependency graph, the tasks and
// application images built on them and the container instances running
// one of those.
type ScanImpact struct {
	ID       string   `json:"id"`
	Aliases  []string `json:"aliases"`
	Summary  string   `json:"summary,omitempty"`
	Severity string   `json:"severity"`
	// Images are the scanned images the advisory affects.
	Images []ImpactImage `json:"images"`
	// Built are the tasks whose last build used an affected image (or an
	// image built on one) as a base, with the images they pushed.
	Built []ImpactBuild `json:"built"`
	// Containers are the container instances running an affected or
	// built image.
	Containers []ImpactContainer `json:"containers"`
}

// ImpactImage is an affected image.
type ImpactImage struct {
	Registry   string   `json:"registry"`
	Repository string   `json:"repository"`
	Digest     string   `json:"digest"`
	Tags       []string `json:"tags,omitempty"`
	Packages   []string `json:"packages"`
}

// ImpactBuild is a task built on an affected image.
type ImpactBuild struct {
	Registry string   `json:"registry"`
	Task     string   `json:"task"`
	Base     string   `json:"base"`
	Run      string   `json:"run"`
	Images   []string `json:"images"`
}

// ImpactContainer is a container instance running an affected image.
type ImpactContainer struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

// ScanPolicy is a repository's scan policy (GET and PUT
// /v1/registries/{reg}/scan-policy?repository=REPO): its own, or, with
// Inherited, its registry's.
type ScanPolicy struct {
	Registry   string `json:"registry"`
	Repository string `json:"repository"`
	ScanOnPush bool   `json:"scanOnPush"`
	// QuarantineSeverity is critical, high, medium or low; "" (or "none"
	// in a request) for no quarantine.
	QuarantineSeverity string `json:"quarantineSeverity,omitempty"`
	// Inherited: the repository has no policy of its own and follows its
	// registry's.
	Inherited bool `json:"inherited,omitempty"`
}
