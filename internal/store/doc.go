// Package store is gantry's OCI content store: blob files on disk, shared by
// every registry of the server, and the metadata that gives them meaning —
// registries, repositories, manifests, tags and their history, upload
// sessions — in SQLite (internal/db).
//
// # On-disk layout
//
//	ROOT/
//	├── blobs/
//	│   ├── sha256/
//	│   │   ├── 00/ … ff/               first two hex digits of the digest (made on first use)
//	│   │   │   └── <64 hex digits>     blob bytes, immutable, verified
//	│   └── sha512/
//	│       └── 00/ … ff/<128 hex digits>
//	└── uploads/
//	    └── <uuid>                      bytes of an upload in progress
//
// A blob is stored once however many registries and repositories hold it;
// which repositories may read it is the repository_blobs table. Uploads are
// written to uploads/<uuid> while being hashed; when the digest (and the size,
// when declared) checks out, the file is renamed into blobs/ — an atomic step
// — and only then recorded in the database. A failed, cancelled or
// interrupted upload never appears under blobs/; its file is removed at once,
// or at the next Open or GC.
//
// # Durability
//
// By default blob files are not fsynced: the database runs with
// synchronous=NORMAL, and a process crash loses nothing, but after a power
// loss the newest blobs (and their rows) may be lost or truncated. WithSync
// fsyncs every blob file and its directory before it is published, at the
// cost of a disk flush per blob.
//
// # Concurrency and garbage collection
//
// Metadata writes are serialised on the database's single write connection;
// concurrent manifest pushes share a transaction (group commit, batch.go),
// each in its own savepoint. Reads of manifests and tags go through a
// bounded in-memory cache (cache.go) that writers keep consistent.
//
// GC removes blobs that no manifest references and that nobody uploaded,
// linked or checked (a HEAD that lets a client skip an upload) within the
// grace window. It picks and unlinks them in one write transaction, so a
// manifest pushed concurrently either commits first (and its blobs are
// referenced) or finds its blobs gone and is refused; files are then removed
// under a per-digest lock that blob commits also take, so a blob re-uploaded
// meanwhile is never deleted. A pass can be limited to one registry
// (GCOptions.Registry: the unreferenced blobs only that registry's
// repositories link, since blobs are shared) or be a dry run; the store
// schedules nothing itself (the server runs the passes, one at a time).
// The store assumes it is the only process writing ROOT and the database.
//
// # Events
//
// Subscribe registers callbacks for tag moves (a tag created or pointed at a
// different digest), whether made over HTTP or through this API. Callbacks
// run synchronously right after the commit, in commit order, on the
// goroutine that commits (with group commit, possibly another pusher's), so
// they must be fast and must not call back into the store's write methods:
// enqueue and return.
package store
