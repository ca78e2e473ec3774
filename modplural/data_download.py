"""``modplural data download vital``: fetch VITAL's released task files for users with internet access."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from modplural.errors import ModPluralError

VITAL_BASE_URL = "https://raw.githubusercontent.com/anudeex/VITAL/main/dataset/"
VITAL_FILES = (
    "vital_overton_valuekaleidoscope.json",
    "vital_steerable_valuekaleidoscope.json",
    "vital_steerable_opinionqa.json",
    "vital_distributional_moralchoice.json",
    "vital_distributional_globalopinionqa.json",
)


def download_vital(data_dir: Path, base_url: str = VITAL_BASE_URL, timeout: float = 30) -> list[str]:
    """Download the VITAL files into ``data_dir/vital``; returns one line per file (fetched, kept or failed)."""
    target = data_dir / "vital"
    target.mkdir(parents=True, exist_ok=True)
    report, failures = [], 0
    for name in VITAL_FILES:
        path = target / name
        if path.is_file():
            report.append(f"kept    {path} (already there)")
            continue
        try:
            with urllib.request.urlopen(base_url + name, timeout=timeout) as response:
                payload = response.read()
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            failures += 1
            report.append(f"failed  {name}: {getattr(exc, 'reason', exc)}")
            continue
        tmp = path.with_suffix(".part")
        tmp.write_bytes(payload)
        tmp.replace(path)
        report.append(f"fetched {path} ({len(payload)} bytes)")
    if failures == len(VITAL_FILES):
        raise ModPluralError(
            f"could not download VITAL from {base_url} (no internet access?); put the files in a directory and pass it with --data-dir or MODPLURAL_DATA"
        )
    return report
