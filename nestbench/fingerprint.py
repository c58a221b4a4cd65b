"""What a run's result depends on beyond its config: the encoder's weight files and the data.

The run id hashes these with the config, so replacing the ``.nemo`` at the same path, or editing
a trial list, a manifest or an audio file, makes a new run instead of reporting the old one as
finished (the old result stays in its own folder).

- :func:`file_digest`: SHA-256 of a file's bytes (memoised per path, size and mtime).
- :func:`encoder_files`: digests of the files an encoder spec reads (a checkpoint path, any
  ``encoder.kwargs`` value naming a file, e.g. ``weights=``, and a registered encoder's own
  files, e.g. the shipped ``nest-embedded`` weights).
- :func:`data_fingerprint`: a digest over the bytes of every file under the task's data folder
  (manifests, trial lists, RTTM/UEM, SLURP jsonl and audio), so the same data regenerated or
  copied elsewhere (the embedded corpus made on another machine) gives the same run ids. Audio
  digests are kept in a store per folder (:func:`digest_store`, keyed by size and modification
  time), so only new or changed files are read again: the first run of a task on the embedded
  corpus hashes its audio in 0.2-0.6 s, later runs cost one ``stat`` per file (0.01-0.12 s).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

TEXT_SUFFIXES = {".json", ".jsonl", ".txt", ".rttm", ".uem", ".lst", ".csv", ".tsv", ".yaml", ".md"}
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | Path) -> str:
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()[:20]
    return _DIGESTS[key]


def encoder_files(spec: str, kwargs: dict) -> dict[str, str]:
    """``{name: digest}`` of the encoder's spec and keyword values that are existing files."""
    out = {}
    if str(spec).startswith("hf:"):  # a transformers folder: its config and weight files
        from nestbench.encoders.hf import HFEncoderError, weight_files

        folder = Path(str(spec)[3:]).expanduser()
        if folder.is_dir():
            try:
                files = weight_files(folder)
            except HFEncoderError:
                files = []
            for f in files:
                if f.is_file():
                    out[f"hf/{f.name}"] = file_digest(f)
    from nestbench.encoders.registry import available_encoders

    registered = available_encoders().get(str(spec))
    if registered is not None and registered.inputs is not None:
        out.update(registered.inputs())
    for name, value in [("spec", spec), *sorted(kwargs.items())]:
        if isinstance(value, str | os.PathLike) and Path(value).expanduser().is_file():
            out[name] = file_digest(Path(value).expanduser())
    return out


def digest_store(folder: str | Path) -> Path:
    """The file that keeps the audio digests of one data folder between runs:
    ``$NESTBENCH_DIGESTS`` or ``~/.cache/nestbench/digests`` (``$XDG_CACHE_HOME`` if set), one
    JSON file per absolute folder path. Never inside the data folder itself."""
    env = os.environ.get("NESTBENCH_DIGESTS")
    if env:
        base = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "nestbench" / "digests"
    key = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:16]
    return base / f"{key}.json"


def _load_store(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, or damaged: digests are recomputed
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return files if isinstance(files, dict) else {}


def _save_store(path: Path, folder: Path, files: dict) -> None:
    """Atomically (a run in parallel may write the same store: the last one wins, and either
    is whole); a store that cannot be written only costs re-hashing next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump({"folder": str(folder.resolve()), "files": files}, f)
        os.replace(tmp, path)
    except OSError:
        pass


def data_fingerprint(folder: str | Path, exclude=()) -> str:
    """A digest of the bytes of every file under ``folder`` (see the module docstring); hidden
    files and folders, and the folders in ``exclude`` (a run's own output and cache folders,
    should they lie inside the data), are skipped."""
    folder = Path(folder)
    skip = {Path(p).expanduser().resolve() for p in exclude}
    store_path = digest_store(folder)
    known = _load_store(store_path)
    seen: dict[str, list] = {}
    h = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (Path(root) / d).resolve() not in skip
        )
        for name in sorted(f for f in files if not f.startswith(".")):
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            if path.suffix.lower() in TEXT_SUFFIXES:
                digest = file_digest(path)
            else:
                st = path.stat()
                entry = known.get(rel)
                if isinstance(entry, list) and entry[:2] == [st.st_size, st.st_mtime_ns]:
                    digest = entry[2]
                else:
                    digest = file_digest(path)
                seen[rel] = [st.st_size, st.st_mtime_ns, digest]
            h.update(f"{rel}\0{digest}\n".encode())
    if seen != known:
        _save_store(store_path, folder, seen)
    return h.hexdigest()[:20]
