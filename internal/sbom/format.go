package sbom

import (
	"bytes"
	"fmt"

	cyclonedx "github.com/CycloneDX/cyclonedx-go"
	"github.com/google/osv-scalibr/converter"
	"github.com/google/osv-scalibr/converter/spdx"
	"github.com/google/osv-scalibr/inventory"
	"github.com/google/uuid"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
)

// tool names gantry in the documents it produces.
const tool = "gantry"

// SPDX returns the inventory as an SPDX 2.3 JSON document named name (the
// image reference), made with scalibr's converter.
func (inv *Inventory) SPDX(name string) ([]byte, error) {
	doc := converter.ToSPDX23(inventory.Inventory{Packages: inv.pkgs}, spdx.Config{
		DocumentName:      name,
		DocumentNamespace: "https://gantry.invalid/sbom/" + uuid.NewString(),
		Creators:          []common.Creator{{Creator: tool, CreatorType: "Tool"}},
	})
	var buf bytes.Buffer
	if err := spdxjson.Write(doc, &buf); err != nil {
		return nil, fmt.Errorf("writing the SPDX document: %w", err)
	}
	return buf.Bytes(), nil
}

// CycloneDX returns the inventory as a CycloneDX 1.6 JSON document whose
// subject is a container named name (the image reference), made with
// scalibr's converter.
func (inv *Inventory) CycloneDX(name string) ([]byte, error) {
	bom := converter.ToCDX(inventory.Inventory{Packages: inv.pkgs}, converter.CDXConfig{
		ComponentName: name,
		ComponentType: string(cyclonedx.ComponentTypeContainer),
	})
	var buf bytes.Buffer
	enc := cyclonedx.NewBOMEncoder(&buf, cyclonedx.BOMFileFormatJSON)
	enc.SetPretty(true)
	if err := enc.EncodeVersion(bom, cyclonedx.SpecVersion1_6); err != nil {
		return nil, fmt.Errorf("writing the CycloneDX document: %w", err)
	}
	return buf.Bytes(), nil
}
