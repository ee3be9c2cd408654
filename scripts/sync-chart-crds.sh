#!/usr/bin/env bash
# Copies the CRDs of crds/ (the single source of truth) into the Helm chart, byte for byte. Helm
# installs the files of a chart's crds/ directory before its templates, and never upgrades or
# deletes them; test/unit/chart.test.ts fails when the copies drift from crds/.
#
# Usage: scripts/sync-chart-crds.sh   (no arguments; run it after changing anything in crds/)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/crds"
dest="$root/charts/kube-audit-operator/crds"

mkdir -p "$dest"
# Copies that no longer have a source (a renamed or removed CRD) would keep being installed.
find "$dest" -maxdepth 1 -type f -name '*.yaml' -delete
# The CRDs only: crds/samples/ holds example resources, which are not the chart's to install.
for file in "$src"/*.yaml; do
  cp "$file" "$dest/"
  echo "copied crds/$(basename "$file")" >&2
done
