// Package sbom produces package inventories (software bills of materials)
// of container images, layer by layer.
//
// Each layer's tar is streamed once. The files that one of osv-scalibr's
// extractors asks for (apk, dpkg and rpm databases, Go binaries,
// package.json files, Python metadata, Java archives) are copied to a
// temporary directory, one at a time, and handed to those extractors; the
// package parsers are scalibr's, none is written here. What a layer
// contributes (its packages by file, whiteouts, opaque directories,
// symlinks, the other paths it writes and its os-release files) is cached
// in the database by the layer's digest, so a second image on the same base
// only reads its new layers.
//
// The cached record of a layer does not depend on the layers below it: the
// OS packages are extracted without an os-release, and the image's OS
// release (found in the composed file system, through symlinks) is set on
// their metadata when the layers are composed, before scalibr's own
// ecosystem and package URL mapping runs. The cache key is therefore the
// layer digest and the extractor set's version only.
//
// An image in which no package is identified is unscanned (Unscanned), never
// clean. Layers that are not tar archives, over the size or entry limits, or
// cancelled fail with an error naming the layer; nothing of a failed layer
// is cached.
package sbom
