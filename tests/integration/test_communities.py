"""The community registry: validation, lookup, and the `communities` CLI.

(On the real model: the parts that need none are in tests/unit/test_communities.py.)"""

from __future__ import annotations

from tests.helpers import assert_one_line_error, community_entry, make_random_adapter, run_cli, write_communities


def test_cli_check_loads_adapters_and_reports_a_missing_one(tmp_path):
    make_random_adapter(tmp_path / "a" / "left", seed=3)
    good = write_communities(tmp_path / "good.yaml", [community_entry("left", "a/left")])
    result = run_cli("communities", "check", "--registry", str(good), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "ok  left" in result.stdout
    bad = write_communities(tmp_path / "bad.yaml", [community_entry("left", "a/left"), community_entry("right", "a/right")])
    assert_one_line_error(run_cli("communities", "check", "--registry", str(bad), "--device", "cpu"), "adapter directory for 'right' not found")

