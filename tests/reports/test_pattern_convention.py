"""Reports read N:M as N KEPT of M; version-1 manifests (N pruned of M) are converted."""

from reports.table import _pattern


def test_new_manifests_pass_through():
    assert _pattern("1:4", "n_kept_of_m") == "1:4"
    assert _pattern(None, "n_kept_of_m") == "unstructured"
    assert _pattern([2, 4]) == "2:4"


def test_version_1_manifest_pattern_is_converted_to_kept():
    assert _pattern("1:4", None) == "3:4"  # old: 1 of 4 pruned = 3 of 4 kept
    assert _pattern("2:4", None) == "2:4"
    assert _pattern("unstructured", None) == "unstructured"
