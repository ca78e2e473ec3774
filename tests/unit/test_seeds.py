"""modplural/seeds.py: the one seed derivation; its values are the ones every earlier run and cache key used."""

from __future__ import annotations

import hashlib

from modplural.seeds import derived_seed, seeded_key


def test_seeds_are_the_values_earlier_runs_used():
    # community messages: int(sha256(f"{seed}|{name}|{prompt}")[:8], 16), as pool.request spelled it out before
    assert derived_seed(0, "patients", "Should sugar be taxed?") == int(hashlib.sha256(b"0|patients|Should sugar be taxed?").hexdigest()[:8], 16)
    # corpus splits and stance examples: the document id alone
    assert derived_seed("doc-17") == int(hashlib.sha256(b"doc-17").hexdigest()[:8], 16)
    # item samples: the full digest of f"{seed}|{id}" as the sort key
    assert seeded_key(3, "C_001") == hashlib.sha256(b"3|C_001").hexdigest()
    assert 0 <= derived_seed("x") < 2**32

