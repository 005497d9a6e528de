// Package oci is gantry's one vocabulary of OCI names: image references
// (parsed by github.com/distribution/reference, the grammar the Docker CLI
// uses), Docker Hub's names and their normalisation, and digests. Every
// package that reads or writes an image reference uses it; none parses
// one by hand.
package oci
