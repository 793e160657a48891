"""Cache keys over content hashes, so a rerun after a failure skips the steps that finished.

A task opts in with one line::

    @task(name="build-features", **content_cache("features", code=("flip_core/data", "sql")))
    def build_features(config: FlipConfig, lake: LakeManifest) -> FeaturesManifest: ...

The key of a call is a SHA-256 over

- every argument's fingerprint: a manifest (any object with a `content_hash` string) by that
  hash; a `FlipConfig` by the named sections only, plus the resolved data root and its cache
  salt; a `Path` by the content of the file or folder; other values by their JSON form;
- the code version: a hash of the source files the step depends on (`flip_core/`, `tasks/`,
  `sql/` unless narrowed);
- the task's name.

Results are persisted as JSON (Prefect's default result storage), so a later flow run, even in
another process, finds them and the task run shows the state `Cached`. Deleting a data root
deletes its salt file, which invalidates every key that points into it; to recompute anyway, set
`PREFECT_TASKS_REFRESH_CACHE=true` for the run.

`work_dir` gives a step a deterministic working folder from the same ingredients, which is where a
training step keeps its checkpoints: a rerun after a crash finds them and resumes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from pydantic import BaseModel

from flip_core.config import FlipConfig
from flip_core.hashing import file_sha256, tree_sha256
from flip_core.layout import DataLayout

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CODE_PATHS: tuple[str, ...] = ("flip_core", "tasks", "sql")
_CODE_SUFFIXES = frozenset({".py", ".sql", ".yaml", ".yml", ".json"})


@cache
def code_version(paths: tuple[str, ...] = DEFAULT_CODE_PATHS) -> str:
    """SHA-256 over the source files under `paths` (relative to the repository root)."""
    digest = hashlib.sha256()
    for rel in sorted(paths):
        root = REPO_ROOT / rel
        if root.is_file():
            files = [root]
        elif root.is_dir():
            files = sorted(
                p
                for p in root.rglob("*")
                if p.is_file() and p.suffix in _CODE_SUFFIXES and "__pycache__" not in p.parts
            )
        else:
            raise FileNotFoundError(f"code path {rel!r} does not exist under {REPO_ROOT}")
        for path in files:
            digest.update(path.relative_to(REPO_ROOT).as_posix().encode())
            digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def cache_salt(data_root: Path) -> str:
    """A random token stored in the data root; a wiped data root gets a new one."""
    data_root.mkdir(parents=True, exist_ok=True)
    path = DataLayout(data_root).cache_salt
    try:
        with path.open("x", encoding="utf-8") as handle:
            handle.write(uuid.uuid4().hex)
    except FileExistsError:
        pass
    return path.read_text(encoding="utf-8").strip()


@cache
def _path_hash(path: str, signature: tuple[tuple[str, int, int], ...]) -> str:
    p = Path(path)
    return file_sha256(p) if p.is_file() else tree_sha256(p)


def _stat_signature(path: Path) -> tuple[tuple[str, int, int], ...]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)


def path_fingerprint(path: Path) -> str:
    """Content hash of a file or folder (memoized on names, sizes and mtimes)."""
    resolved = path.resolve()
    if not resolved.exists():
        return f"missing:{resolved}"
    return _path_hash(str(resolved), _stat_signature(resolved))


def config_fingerprint(config: FlipConfig, sections: Sequence[str]) -> dict[str, Any]:
    """The named config sections, the resolved data root, its salt and the raw data's content."""
    dumped = config.model_dump(mode="json")
    unknown = [s for s in sections if s not in dumped]
    if unknown:
        raise KeyError(f"unknown config section(s) {unknown}; known: {sorted(dumped)}")
    data_root = config.paths.data_root.resolve()
    out: dict[str, Any] = {s: dumped[s] for s in sorted(sections)}
    out["data_root"] = str(data_root)
    out["salt"] = cache_salt(data_root)
    if "paths" in sections and config.paths.raw_dir is not None:
        out["paths"] = {**out["paths"], "raw_dir": path_fingerprint(config.paths.raw_dir)}
    return out


def fingerprint(value: Any, sections: Sequence[str] = ()) -> Any:
    """A JSON-able, content-based stand-in for one task argument."""
    if isinstance(value, FlipConfig):
        return config_fingerprint(value, sections)
    content_hash = getattr(value, "content_hash", None)
    if isinstance(content_hash, str):
        return {"content_hash": content_hash}
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return {"path_content": path_fingerprint(value)}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): fingerprint(v, sections) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [fingerprint(v, sections) for v in value]
    raise TypeError(
        f"cannot build a content cache key from a {type(value).__name__}; "
        "pass manifests (with content_hash), configs, paths or plain values"
    )


def cache_key(
    name: str,
    inputs: Mapping[str, Any],
    sections: Sequence[str] = (),
    code: Sequence[str] = DEFAULT_CODE_PATHS,
) -> str:
    """The content key of a call of step `name` with `inputs`."""
    payload = {
        "step": name,
        "code": code_version(tuple(sorted(code))),
        "inputs": {k: fingerprint(v, sections) for k, v in sorted(inputs.items())},
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class ContentHashPolicy(CachePolicy):
    """Prefect cache policy: key = inputs' content hashes + config sections + code version."""

    sections: tuple[str, ...] = ()
    code: tuple[str, ...] = DEFAULT_CODE_PATHS
    exclude: tuple[str, ...] = field(default_factory=tuple)

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        kept = {k: v for k, v in inputs.items() if k not in self.exclude}
        return cache_key(task_ctx.task.name, kept, self.sections, self.code)


def content_cache(
    *sections: str,
    code: Sequence[str] = DEFAULT_CODE_PATHS,
    exclude: Sequence[str] = (),
) -> dict[str, Any]:
    """`@task` keyword arguments that cache a step on its inputs' content (see module doc).

    `sections`: the `FlipConfig` sections the step reads (its output location is always part of
    the key). `code`: source paths the step depends on. `exclude`: arguments that do not change
    the result (e.g. a progress flag).
    """
    policy = ContentHashPolicy(sections=tuple(sections), code=tuple(code), exclude=tuple(exclude))
    return {"cache_policy": policy, "persist_result": True, "result_serializer": "json"}


def work_dir(config: FlipConfig, step: str, *inputs: Any, sections: Sequence[str] = ()) -> Path:
    """A deterministic folder `<data_root>/work/<step>/<key>` for the step's outputs/checkpoints."""
    named = {f"arg{i}": value for i, value in enumerate(inputs)}
    named["config"] = config
    key = cache_key(step, named, sections)
    return DataLayout(config.paths.data_root).work(step, key)
