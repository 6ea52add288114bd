"""besa_common.digest: the one digest definition keeps the values already recorded in run dirs and sweeps."""

import hashlib
import json

from hypothesis import given
from hypothesis import strategies as st

from besa_common.digest import canonical_json, file_sha256, json_digest


def test_values_by_hand():
    # the exact strings status.json (besa run) and sweep point ids were written with
    assert canonical_json({"b": 1, "a": [1, "x"]}) == '{"a": [1, "x"], "b": 1}'
    assert json_digest(["a"], algorithm="sha1", length=16) == hashlib.sha1(b'["a"]').hexdigest()[:16]
    assert json_digest({}) == hashlib.sha256(b"{}").hexdigest()


@given(st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=5), st.none()), max_size=6))
def test_key_order_does_not_matter(d):
    reordered = dict(reversed(list(d.items())))
    assert json_digest(d) == json_digest(reordered)
    assert json_digest(d, "sha1", 12) == hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def test_file_sha256(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"x" * (3 << 20) + b"tail")  # more than one 1 MiB chunk
    assert file_sha256(p) == hashlib.sha256(p.read_bytes()).hexdigest()
