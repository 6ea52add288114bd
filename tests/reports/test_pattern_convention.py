"""Reports read N:M as N KEPT of M; version-1 manifests (N pruned of M) are converted.

The conversion itself is :func:`besa_common.sparsity.pattern_label` (tested in tests/common/test_sparsity.py);
here: the report reads a run directory through it."""

import json

from besa_common.sparsity import pattern_label
from reports.table import load_run, run_meta


def test_new_manifests_pass_through():
    assert pattern_label("1:4", "n_kept_of_m") == "1:4"
    assert pattern_label(None, "n_kept_of_m") == "unstructured"
    assert pattern_label([2, 4]) == "2:4"


def test_version_1_manifest_pattern_is_converted_to_kept():
    assert pattern_label("1:4", None) == "3:4"  # old: 1 of 4 pruned = 3 of 4 kept
    assert pattern_label("2:4", None) == "2:4"
    assert pattern_label("unstructured", None) == "unstructured"


def test_run_directories_of_both_versions(tmp_path):
    for name, manifest, want in (
        ("v1", {"method": "wanda", "pattern": "1:4", "target": 0.25}, "3:4"),  # no pattern_convention: N pruned of M
        ("v2", {"method": "wanda", "pattern": "1:4", "target": 0.75, "pattern_convention": "n_kept_of_m"}, "1:4"),
        ("v2list", {"method": "wanda", "pattern": [2, 4], "target": 0.5, "pattern_convention": "n_kept_of_m"}, "2:4"),
    ):
        d = tmp_path / name
        d.mkdir()
        (d / "manifest.json").write_text(json.dumps(manifest))
        assert run_meta(load_run(d))["pattern"] == want, name
