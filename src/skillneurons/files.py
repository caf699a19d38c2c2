"""Files: atomic writes, strict JSON, hashes. Floor 0: imports neither torch nor transformers.

Every file skillneurons writes goes through :func:`atomic_write_bytes` (a temporary file in the same
folder, fsync, rename), so a reader never sees half a file and an interrupted write loses nothing
that was there before. JSON is always valid JSON: NaN and infinities are refused, never written.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from skillneurons.errors import ArtifactError

__all__ = [
    "FIGURE_DIGITS",
    "atomic_write_bytes",
    "atomic_write_json",
    "home",
    "read_json",
    "round_figure",
    "sha256_file",
    "to_jsonable",
]

#: significant digits of a reported figure in a result file (float32 noise such as 0.7166666388511658
#: is not a figure; tensors keep their full precision)
FIGURE_DIGITS = 6


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename.

    The file gets the usual permissions (``0666`` less the umask), not ``mkstemp``'s ``0600``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def round_figure(x: float, digits: int = FIGURE_DIGITS) -> float:
    """``x`` rounded to ``digits`` significant digits (idempotent: a rounded figure rounds to itself)."""
    return float(f"{x:.{digits}g}")


def to_jsonable(obj: Any, where: str = "value", digits: int | None = None) -> Any:
    """``obj`` with tuples as lists, paths as strings, integral floats kept as floats and, with
    ``digits``, every float rounded to that many significant digits (ints stay exact); raises
    :class:`ValueError` naming ``where`` for a NaN or an infinity (they are not JSON)."""
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"{where} is {obj}: non-finite numbers are not results")
        return obj if digits is None else round_figure(obj, digits)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v, f"{where}.{k}", digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v, f"{where}[{i}]", digits) for i, v in enumerate(obj)]
    if isinstance(obj, str | int | bool) or obj is None:
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    to_json = getattr(obj, "to_json", None)  # a typed result (skillneurons.results.Result) inside a dict
    if callable(to_json):
        return to_jsonable(to_json(), where, digits)
    item = getattr(obj, "item", None)  # numpy / torch scalars
    if callable(item):
        return to_jsonable(item(), where, digits)
    return str(obj)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically; a NaN or infinity anywhere in ``obj`` is refused
    (``ValueError`` naming the key) and nothing is written."""
    text = json.dumps(to_jsonable(obj, Path(path).name), indent=2, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def read_json(path: str | os.PathLike[str], what: str = "file") -> Any:
    """Parse the JSON file ``path``; a missing, unreadable or corrupted file is a one-line
    :class:`~skillneurons.errors.ArtifactError` naming it."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ArtifactError(f"{what} {p} does not exist: check the path") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{what} {p} is not valid JSON ({e}): the file is corrupted; re-create it") from e
    except OSError as e:
        raise ArtifactError(f"cannot read {what} {p}: {e.strerror or e}") from e


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def home() -> Path:
    """Folder for caches and fetched assets: ``$SKILLNEURONS_HOME`` or ``~/.cache/skillneurons``."""
    return Path(os.environ.get("SKILLNEURONS_HOME", Path.home() / ".cache" / "skillneurons"))
