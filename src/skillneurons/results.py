"""Typed results: every result a command writes is a dataclass with ``to_json`` / ``from_json``.

A result class subclasses :class:`Result` and names its ``SCHEMA`` (e.g. ``"skillneurons.find"``)
and ``VERSION``. ``to_json()`` returns plain JSON types with ``schema`` and ``schema_version`` keys;
``from_json()`` rebuilds the dataclass (nested dataclasses, lists, tuples, dicts and optionals follow
the field annotations) and refuses another schema or a newer version with a one-line error. Floats are
reported figures: ``to_json`` rounds them to ``DIGITS`` significant digits (6; the tensors of an
artifact keep their full precision), and two results are equal when their JSON is, so a result equals
itself saved and loaded again. The report, plots, benches and CLI read these classes, never raw keys.
Floor 0: no torch.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from skillneurons.errors import ArtifactError
from skillneurons.files import FIGURE_DIGITS, atomic_write_json, read_json, to_jsonable

__all__ = ["Result", "decode"]

R = TypeVar("R", bound="Result")


def decode(tp: Any, value: Any) -> Any:
    """``value`` (parsed JSON) converted to the annotation ``tp``: dataclasses from dicts, tuples from
    lists, ``X | None`` and ``Any`` passed through; other types are returned as they are."""
    if value is None or tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for a in args:
            if a is type(None):
                continue
            try:
                return decode(a, value)
            except (TypeError, ValueError, KeyError):
                continue
        return value
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        hints = typing.get_type_hints(tp)
        kwargs = {
            f.name: decode(hints.get(f.name, Any), value[f.name])
            for f in dataclasses.fields(tp)
            if f.init and f.name in value
        }
        ctor: Any = tp
        return ctor(**kwargs)
    if origin in (list, typing.List) and isinstance(value, list):  # noqa: UP006
        return [decode(args[0] if args else Any, v) for v in value]
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(args[0], v) for v in value)
        if args:
            return tuple(decode(a, v) for a, v in zip(args, value, strict=False))
        return tuple(value)
    if origin in (dict, typing.Dict) and isinstance(value, dict):  # noqa: UP006
        vt = args[1] if len(args) == 2 else Any
        return {k: decode(vt, v) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is Path and isinstance(value, str):
        return Path(value)
    return value


@dataclasses.dataclass
class Result:
    """Base class of typed results (subclasses are dataclasses and set ``SCHEMA``)."""

    SCHEMA: ClassVar[str] = "skillneurons.result"
    VERSION: ClassVar[int] = 1
    #: significant digits of the floats in :meth:`to_json` (None: full precision)
    DIGITS: ClassVar[int | None] = FIGURE_DIGITS

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # equality by the reported JSON: set before @dataclass runs, which then keeps it (it adds an
        # __eq__ only to a class that has none of its own)
        if "__eq__" not in cls.__dict__:
            cls.__eq__ = Result.__eq__  # type: ignore[method-assign]

    def __eq__(self, other: object) -> bool:
        """Equal when of the same class with the same :meth:`to_json` (figures compare as reported)."""
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Result)
        return self.to_json() == other.to_json()

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types, with ``schema`` and ``schema_version`` first; floats rounded to ``DIGITS``
        significant digits; NaN/inf are refused."""
        body = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {
            "schema": self.SCHEMA,
            "schema_version": self.VERSION,
            **to_jsonable(_plain(body), self.SCHEMA, self.DIGITS),
        }

    @classmethod
    def from_json(cls: type[R], obj: Any, where: str = "result") -> R:
        """Rebuild from :meth:`to_json`'s output; a one-line ArtifactError for another schema."""
        if not isinstance(obj, dict):
            raise ArtifactError(f"{where} is not a JSON object: it is not a {cls.SCHEMA} result")
        schema = obj.get("schema", cls.SCHEMA)
        if schema != cls.SCHEMA:
            raise ArtifactError(f"{where} holds a '{schema}' result, not '{cls.SCHEMA}': pass the right file")
        version = int(obj.get("schema_version", 1))
        if version > cls.VERSION:
            raise ArtifactError(
                f"{where} was written by a newer skillneurons ({cls.SCHEMA} v{version}): upgrade skillneurons"
            )
        try:
            out = decode(cls, {k: v for k, v in obj.items() if k not in ("schema", "schema_version")})
        except (TypeError, KeyError, ValueError) as e:
            raise ArtifactError(f"{where} does not match the {cls.SCHEMA} schema ({e}): re-create it") from e
        if not isinstance(out, cls):
            raise ArtifactError(f"{where} does not match the {cls.SCHEMA} schema: re-create it")
        return out

    # ---- read access by key (``result["accuracy"]``, ``{**result}``), for one release: the functions that
    # returned dicts return these classes now; new code reads attributes ------------------------------
    def keys(self) -> list[str]:
        """The field names (so ``dict(result)`` and ``{**result}`` work like the old dicts)."""
        return [f.name for f in dataclasses.fields(self)]

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str) or key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.keys()

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self else default

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_json` to ``path`` atomically; returns the path."""
        atomic_write_json(path, self.to_json())
        return Path(path)

    @classmethod
    def load(cls: type[R], path: str | os.PathLike[str]) -> R:
        """Read a result written by :meth:`save`."""
        return cls.from_json(read_json(path, "result file"), where=str(path))


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj
