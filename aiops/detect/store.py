"""Versioned detector models on disk: a pickle per version plus a JSON sidecar describing it.

SECURITY: unpickling runs code. The models folder must be trusted and writable only by the agent. As a guard
against corruption and accidental swaps (not against an attacker who can write both files), the sidecar records the
pickle's sha256 and ``load`` checks it before unpickling.

Layout: ``<directory>/<name>/v0001.pkl`` and ``v0001.json``, plus ``current.json`` naming the promoted version and
the versions promoted before it (``{"version": 3, "history": [1, 2]}``). Without ``current.json`` (models saved
before promotion existed) the highest version is the current one. Older versions stay, so a retrain that turns out
worse is undone by ``rollback``; a challenger can be saved without being promoted (``save(..., promote=False)``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

from aiops.domain.errors import InputError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VERSION_FILE = re.compile(r"^v(\d+)\.json$")
CURRENT_FILE = "current.json"
_LIBRARIES = ("numpy", "pandas", "scikit-learn", "pyod")
FORMAT = 1


class ModelFileError(InputError):
    """A model file cannot be used: missing, corrupt, checksum mismatch, wrong class or wrong features."""


@dataclass(frozen=True)
class ModelRecord:
    """The sidecar of one saved model version."""

    name: str
    version: int
    created: float
    trained_start: float | None
    trained_end: float | None
    features: tuple[str, ...]
    detector_class: str
    libraries: dict[str, str]
    sha256: str
    path: str
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["features"] = list(self.features)
        data["format"] = FORMAT
        return data


def class_path(obj: object) -> str:
    """``module.QualName`` of an object's class: what the sidecar records and ``load`` compares."""
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def library_versions() -> dict[str, str]:
    """Versions of the libraries a pickled detector depends on (a mismatch is worth a warning, not a refusal)."""
    out = {"python": platform.python_version()}
    for lib in _LIBRARIES:
        try:
            out[lib] = importlib_metadata.version(lib)
        except importlib_metadata.PackageNotFoundError:
            out[lib] = "missing"
    return out


class ModelStore:
    """Saves and loads versioned models under ``directory`` (see the module docstring about trust)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def save(self, name: str, model: object, metadata: Mapping[str, Any] | None = None,
             promote: bool = True) -> ModelRecord:
        """Pickle ``model`` as the next version of ``name``; returns its record. With ``promote`` (the default) the
        new version becomes the current one; without, the current version stays (a challenger kept for the record).

        ``metadata`` may give ``trained_start``, ``trained_end`` and ``features``; when absent they are read from the
        model (``features`` attribute; ``models[...].trained_start/end`` of a ``WorkloadDetector``). Other keys are kept
        in ``extra``. Both files are written to temp names and linked into place, so a crash leaves no half model.
        """
        folder = self._folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        meta = dict(metadata or {})
        blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        start, end = _trained_window(model)
        base = {
            "name": name, "created": time.time(),
            "trained_start": _float_or_none(meta.pop("trained_start", start)),
            "trained_end": _float_or_none(meta.pop("trained_end", end)),
            "features": tuple(meta.pop("features", getattr(model, "features", ()) or ())),
            "detector_class": class_path(model), "libraries": library_versions(),
            "sha256": hashlib.sha256(blob).hexdigest(), "extra": meta,
        }
        version = self._latest_version(folder) + 1
        previous = self.current_version(name)
        if not promote:
            self._write_current(folder, previous or None, self._history(folder))  # pin it before the new one lands
        while True:
            pkl, side = folder / f"v{version:04d}.pkl", folder / f"v{version:04d}.json"
            record = ModelRecord(version=version, path=str(pkl), **base)
            if _link_new(pkl, blob):
                # The sidecar is written last: its presence is what makes the version exist.
                if _link_new(side, (json.dumps(record.as_dict(), indent=1) + "\n").encode()):
                    if promote:
                        self.promote(name, version)
                    return record
                pkl.unlink(missing_ok=True)
            version += 1  # another writer took this version number

    def load(self, name: str, expected_features: Sequence[str] | None = None,
             expected_class: type | None = None, version: int | None = None) -> tuple[object, ModelRecord]:
        """The latest (or given) version of ``name`` and its record.

        Raises ``ModelFileError`` naming the file for a missing or corrupt file, a checksum mismatch, an object of
        another class than recorded (or than ``expected_class``), or features other than ``expected_features``.
        """
        folder = self._folder(name)
        if version is None:
            if self._latest_version(folder) == 0:
                raise ModelFileError(str(folder), f"no saved model named {name!r}")
            version = self.current_version(name)
            if version == 0:
                raise ModelFileError(str(folder / CURRENT_FILE), f"no version of {name!r} is promoted; promote one")
        side = folder / f"v{version:04d}.json"
        record = _read_sidecar(side)
        pkl = folder / f"v{version:04d}.pkl"
        try:
            blob = pkl.read_bytes()
        except OSError as exc:
            raise ModelFileError(str(pkl), f"cannot read model file: {exc.strerror or exc}") from None
        if hashlib.sha256(blob).hexdigest() != record.sha256:
            raise ModelFileError(str(pkl), "checksum mismatch with its sidecar (file changed or corrupt); retrain")
        try:
            model = pickle.loads(blob)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means an unusable file
            raise ModelFileError(str(pkl), f"cannot unpickle: {type(exc).__name__}: {exc}") from None
        if class_path(model) != record.detector_class:
            raise ModelFileError(str(pkl), f"holds a {class_path(model)}, sidecar says {record.detector_class}")
        if expected_class is not None and not isinstance(model, expected_class):
            raise ModelFileError(str(pkl), f"holds a {class_path(model)}, expected {expected_class.__qualname__}")
        if expected_features is not None and tuple(expected_features) != record.features:
            missing = [f for f in expected_features if f not in record.features]
            extra = [f for f in record.features if f not in expected_features]
            raise ModelFileError(str(side), f"feature list does not match (missing {missing}, unexpected {extra}, "
                                            "or another order); retrain")
        return model, record

    def list(self) -> list[ModelRecord]:
        """The current readable record of every model name, sorted by name (unreadable ones are left out)."""
        out = []
        if not self.directory.is_dir():
            return out
        for folder in sorted(p for p in self.directory.iterdir() if p.is_dir() and _NAME.match(p.name)):
            try:
                version = self.current_version(folder.name)
            except ModelFileError:
                continue
            if version:
                try:
                    out.append(_read_sidecar(folder / f"v{version:04d}.json"))
                except ModelFileError:
                    continue
        return out

    def versions(self, name: str) -> list[int]:
        """Every saved version number of ``name``, ascending."""
        folder = self._folder(name)
        if not folder.is_dir():
            return []
        return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _VERSION_FILE.match(p.name)))

    def names(self) -> list[str]:
        """Every model name with at least one saved version, sorted."""
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir() if p.is_dir() and _NAME.match(p.name)
                      and self.versions(p.name))

    def record(self, name: str, version: int) -> ModelRecord:
        """The sidecar of one version: ``ModelFileError`` naming the model's versions when there is no such version,
        or naming the file when it is unreadable or malformed."""
        side = self._folder(name) / f"v{int(version):04d}.json"
        if not side.exists():
            known = self.versions(name)
            if not known:
                raise ModelFileError(str(self._folder(name)), f"no saved model named {name!r}")
            raise ModelFileError(str(self._folder(name)), f"model {name} has no version {int(version)} "
                                                          f"(versions: {', '.join(map(str, known))})")
        return _read_sidecar(side)

    def records(self, name: str) -> list[ModelRecord]:
        """Every readable version's record of ``name``, oldest first."""
        out = []
        for version in self.versions(name):
            try:
                out.append(self.record(name, version))
            except ModelFileError:
                continue
        return out

    def find(self, name: str, key: str, value: Any) -> ModelRecord | None:
        """The newest version whose ``extra[key] == value`` (e.g. the version a retrain plan wrote), or ``None``."""
        for record in reversed(self.records(name)):
            if record.extra.get(key) == value:
                return record
        return None

    def current_version(self, name: str) -> int:
        """The promoted version of ``name`` (0 when none): ``current.json``, else the highest version."""
        folder = self._folder(name)
        pointer = folder / CURRENT_FILE
        if not pointer.exists():
            return self._latest_version(folder)
        version = _read_pointer(pointer).get("version")
        return int(version) if version else 0

    def promote(self, name: str, version: int) -> ModelRecord:
        """Make ``version`` the current one; the version it replaces is remembered for ``rollback``.

        Promoting the version that is already current changes nothing. An unknown version is a ``ModelFileError``
        listing the versions there are; an unreadable one names its sidecar.
        """
        folder = self._folder(name)
        record = self.record(name, version)  # refuses a version that does not exist
        current = self.current_version(name)
        if current == record.version:
            return record
        history = [v for v in self._history(folder) if v != record.version]
        if current:
            history.append(current)
        self._write_current(folder, record.version, history)
        return record

    def rollback(self, name: str, to: int | None = None) -> ModelRecord:
        """Go back to ``to``, or to the version promoted before the current one (else the highest older version).

        ``ModelFileError`` when there is nothing to go back to.
        """
        folder = self._folder(name)
        if to is None and not self.versions(name):
            raise ModelFileError(str(folder), f"no saved model named {name!r}")
        current = self.current_version(name)
        history = self._history(folder)
        if to is None:
            earlier = [v for v in history if v != current and v in self.versions(name)]
            older = [v for v in self.versions(name) if v < current]
            if earlier:
                to = earlier[-1]
            elif older:
                to = older[-1]
            else:
                raise ModelFileError(str(folder), f"{name!r} has no earlier version to roll back to "
                                                  f"(current v{current})")
        record = self.record(name, to)
        kept = history[:history.index(record.version)] if record.version in history else history
        self._write_current(folder, record.version, kept)
        return record

    def _history(self, folder: Path) -> list[int]:
        pointer = folder / CURRENT_FILE
        if not pointer.exists():
            return []
        return [int(v) for v in _read_pointer(pointer).get("history", [])]

    def _write_current(self, folder: Path, version: int | None, history: list[int]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"version": version, "history": history[-50:], "updated": time.time()}) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=f".{CURRENT_FILE}.", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, folder / CURRENT_FILE)  # atomic: readers see the old pointer or the new one

    def _folder(self, name: str) -> Path:
        if not isinstance(name, str) or not _NAME.match(name):
            raise InputError("model name", f"{name!r} must be letters, digits, '.', '_' or '-'")
        return self.directory / name

    def _latest_version(self, folder: Path) -> int:
        return max(self.versions(folder.name), default=0) if folder.is_dir() else 0


def _link_new(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` only if it does not exist yet, never exposing a partial file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


def _read_sidecar(side: Path) -> ModelRecord:
    try:
        raw = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(str(side), "sidecar missing (the model file cannot be trusted without it)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(str(side), f"sidecar unreadable: {exc}") from None
    try:
        if not isinstance(raw, dict):
            raise TypeError("not an object")
        return ModelRecord(
            name=str(raw["name"]), version=int(raw["version"]), created=float(raw["created"]),
            trained_start=_float_or_none(raw.get("trained_start")), trained_end=_float_or_none(raw.get("trained_end")),
            features=tuple(str(f) for f in raw.get("features", ())), detector_class=str(raw["detector_class"]),
            libraries=dict(raw.get("libraries", {})), sha256=str(raw["sha256"]), path=str(raw.get("path", "")),
            extra=dict(raw.get("extra", {})))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(str(side), f"sidecar malformed: {type(exc).__name__}: {exc}") from None


def _read_pointer(pointer: Path) -> dict[str, Any]:
    try:
        raw = json.loads(pointer.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(str(pointer), f"unreadable: {exc}") from None
    version = raw.get("version") if isinstance(raw, dict) else "?"
    history = raw.get("history", []) if isinstance(raw, dict) else None
    if not (version is None or (isinstance(version, int) and version >= 0)) or not isinstance(history, list) \
            or not all(isinstance(v, int) for v in history):
        raise ModelFileError(str(pointer), 'malformed: expected {"version": N, "history": [N, ...]}')
    return raw


def _trained_window(model: object) -> tuple[float | None, float | None]:
    models = getattr(model, "models", None)
    if isinstance(models, dict) and models:
        starts = [getattr(m, "trained_start", None) for m in models.values()]
        ends = [getattr(m, "trained_end", None) for m in models.values()]
        starts, ends = [s for s in starts if s is not None], [e for e in ends if e is not None]
        return (min(starts) if starts else None, max(ends) if ends else None)
    return getattr(model, "trained_start", None), getattr(model, "trained_end", None)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
