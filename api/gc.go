package api

// GCRequest is the body of POST /v1/gc, which runs a garbage collection
// pass now (admin only) and answers a GCResult when it is over.
type GCRequest struct {
	// Registry limits the pass to one registry: blobs that no manifest of
	// any registry references and that only this registry's repositories
	// link, and this registry's expired upload sessions. Empty: the whole
	// server, as the scheduled passes.
	Registry string `json:"registry,omitempty"`
	// DryRun reports what the pass would remove and removes nothing.
	DryRun bool `json:"dryRun,omitempty"`
	// Grace is the grace window of this pass, a Go duration ("1h", "0s"):
	// blobs uploaded, linked or checked more recently are kept. Empty: the
	// server's storage.gcGrace. "0s" is safe only when nothing is being
	// pushed.
	Grace string `json:"grace,omitempty"`
}

// GCResult is what a garbage collection pass removed (or would remove, for
// a dry run).
type GCResult struct {
	Registry string `json:"registry,omitempty"`
	DryRun   bool   `json:"dryRun"`
	// Grace is the grace window the pass used.
	Grace string `json:"grace"`
	// Blobs and Bytes count the blobs deleted and their bytes.
	Blobs int   `json:"blobs"`
	Bytes int64 `json:"bytes"`
	// Uploads counts the expired upload sessions and orphaned upload files
	// removed.
	Uploads int `json:"uploads"`
	// Seconds is how long the pass took.
	Seconds float64 `json:"seconds"`
	// Digests lists the blobs deleted.
	Digests []string `json:"digests,omitempty"`
}
