"""SLURP spoken-language-understanding data (Bastianelli et al., EMNLP 2020).

One JSON object a line (``dataset/slurp/{train,devel,test}.jsonl`` in the SLURP repository)::

    {"slurp_id": 4489, "sentence": "wake me up at eight o'clock",
     "sentence_annotation": "wake me up at [time : eight] o'clock",
     "intent": "alarm_set", "action": "set",
     "tokens": [{"surface": "wake", "id": 0, "lemma": "wake", "pos": "VB"}, ...],
     "scenario": "alarm",
     "recordings": [{"file": "audio-1502099775-headset.flac", "wer": 0.0, "ent_wer": 0.0,
                     "status": "correct"}, ...],
     "entities": [{"span": [4], "type": "time"}]}

``intent`` is ``<scenario>_<action>``; an entity's ``span`` lists the ids of its tokens, and its
filler (the words SLU metrics compare) is those tokens' surfaces joined by spaces.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .manifest import ManifestError, atomic_write_text, read_parsed_lines

#: Key order of SLURP's own files.
KEY_ORDER = (
    "slurp_id", "sentence", "sentence_annotation", "intent", "action", "tokens", "scenario",
    "recordings", "entities",
)  # fmt: skip
_ANNOTATION = re.compile(r"\[\s*([^\[\]:]+?)\s*:\s*([^\[\]]*?)\s*\]")


def _fail(path, lineno, msg):
    raise ManifestError(path, lineno, msg)


def validate_record(rec, path: str | Path = "<slurp>", lineno: int = 1) -> dict:
    """Check one SLURP record's fields and types; return it.

    Raises:
        ManifestError: a missing or mistyped field, or an entity span naming a missing token.
    """
    if not isinstance(rec, dict):
        _fail(path, lineno, f"a JSON {type(rec).__name__}, expected a SLURP record (JSON object)")
    if not isinstance(rec.get("slurp_id"), int) or isinstance(rec.get("slurp_id"), bool):
        _fail(path, lineno, f'"slurp_id" is {rec.get("slurp_id")!r}, expected an integer')
    for key in ("sentence", "scenario", "action", "intent"):
        if not isinstance(rec.get(key), str):
            _fail(path, lineno, f'"{key}" is {rec.get(key)!r}, expected a string')
    if "sentence_annotation" in rec and not isinstance(rec["sentence_annotation"], str):
        _fail(
            path,
            lineno,
            f'"sentence_annotation" is {rec["sentence_annotation"]!r}, expected '
            "a string like 'wake me up at [time : nine am]'",
        )
    if rec["intent"] != f"{rec['scenario']}_{rec['action']}":
        _fail(
            path,
            lineno,
            f'"intent" is {rec["intent"]!r}, expected "<scenario>_<action>" = '
            f"{rec['scenario'] + '_' + rec['action']!r}",
        )
    tokens = rec.get("tokens")
    if not isinstance(tokens, list):
        _fail(
            path,
            lineno,
            '"tokens" is missing or not a list, expected '
            '[{"surface": ..., "id": 0, "lemma": ..., "pos": ...}, ...]',
        )
    ids = set()
    for i, tok in enumerate(tokens):
        if not (
            isinstance(tok, dict)
            and isinstance(tok.get("surface"), str)
            and isinstance(tok.get("id"), int)
        ):
            _fail(
                path,
                lineno,
                f"token {i} is {tok!r}, expected "
                '{"surface": <string>, "id": <integer>, "lemma": ..., "pos": ...}',
            )
        ids.add(tok["id"])
    entities = rec.get("entities", [])
    if not isinstance(entities, list):
        _fail(
            path,
            lineno,
            '"entities" is not a list, expected [{"span": [token ids], "type": <string>}, ...]',
        )
    for i, ent in enumerate(entities):
        if not (
            isinstance(ent, dict)
            and isinstance(ent.get("type"), str)
            and isinstance(ent.get("span"), list)
            and ent["span"]
            and all(isinstance(j, int) for j in ent["span"])
        ):
            _fail(
                path,
                lineno,
                f'entity {i} is {ent!r}, expected {{"span": [token ids], "type": <string>}}',
            )
        missing = [j for j in ent["span"] if j not in ids]
        if missing:
            _fail(
                path,
                lineno,
                f"entity {i} ({ent['type']}) spans token ids {missing} that "
                f"are not in tokens (ids {min(ids, default=0)}..{max(ids, default=-1)})",
            )
    recordings = rec.get("recordings", [])
    if not isinstance(recordings, list) or not all(
        isinstance(r, dict) and isinstance(r.get("file"), str) for r in recordings
    ):
        _fail(path, lineno, '"recordings" is not a list of {"file": <name>, ...}')
    return rec


def parse_slurp_line(line: str, path: str | Path = "<slurp>", lineno: int = 1) -> dict | None:
    """One validated SLURP record from a jsonl line (see :func:`validate_record`); None for a
    blank line. Raises ManifestError naming the file and line."""
    if not line.strip():
        return None
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        _fail(
            path,
            lineno,
            f"not valid JSON ({e.msg} at column {e.colno}); expected "
            "one SLURP record (JSON object) per line",
        )
    return validate_record(rec, path, lineno)


def read_slurp(path: str | Path) -> list[dict]:
    """All records of a SLURP jsonl file, validated (see :func:`validate_record`).

    Raises:
        ManifestError: a malformed line (file, line number and what was expected).
    """
    return read_parsed_lines(path, parse_slurp_line)


def ordered(rec: dict) -> dict:
    """The record with SLURP's key order (other keys after)."""
    out = {k: rec[k] for k in KEY_ORDER if k in rec}
    out.update((k, v) for k, v in rec.items() if k not in out)
    return out


def write_slurp(path: str | Path, records: Iterable[dict]) -> None:
    """Write records as SLURP jsonl, atomically."""
    atomic_write_text(
        path, "".join(json.dumps(ordered(r), ensure_ascii=False) + "\n" for r in records)
    )


def parse_annotation(annotation: str) -> tuple[str, list[dict]]:
    """Split ``"wake me up at [time : nine am]"`` into the plain sentence and its entities.

    Returns:
        (sentence, [{"type": "time", "filler": "nine am"}, ...]) with single spaces.

    Raises:
        ValueError: unbalanced brackets or an entity without ``type : filler``.
    """
    entities = []
    pieces = []
    pos = 0
    for m in _ANNOTATION.finditer(annotation):
        pieces.append(annotation[pos : m.start()])
        filler = " ".join(m.group(2).split())
        entities.append({"type": m.group(1).strip(), "filler": filler})
        pieces.append(filler)
        pos = m.end()
    pieces.append(annotation[pos:])
    sentence = " ".join("".join(pieces).split())
    if "[" in sentence or "]" in sentence:
        raise ValueError(
            f"unbalanced or malformed entity brackets in {annotation!r}; expected "
            "'[type : filler words]'"
        )
    return sentence, entities


def record_entities(rec: dict) -> list[dict]:
    """The record's entities as ``{"type", "filler"}``, fillers from the spanned tokens."""
    surface = {t["id"]: t["surface"] for t in rec["tokens"]}
    return [
        {"type": e["type"], "filler": " ".join(surface[i] for i in e["span"])}
        for e in rec.get("entities", [])
    ]


def annotation_problems(rec: dict) -> list[str]:
    """Disagreements between a record's ``sentence``, ``tokens``, ``entities`` and
    ``sentence_annotation`` (empty when consistent)."""
    problems = []
    try:
        sentence, from_annotation = parse_annotation(rec.get("sentence_annotation", ""))
    except ValueError as e:
        return [str(e)]
    if sentence != " ".join(rec["sentence"].split()):
        problems.append(f"annotation text {sentence!r} differs from sentence {rec['sentence']!r}")
    token_text = " ".join(t["surface"] for t in sorted(rec["tokens"], key=lambda t: t["id"]))
    if token_text != " ".join(rec["sentence"].split()):
        problems.append(f"tokens {token_text!r} differ from sentence {rec['sentence']!r}")
    from_spans = record_entities(rec)
    if from_spans != from_annotation:
        problems.append(
            f"entities from spans {from_spans} differ from the annotation's {from_annotation}"
        )
    return problems


Part = str | tuple[str, str]


def make_record(
    slurp_id: int,
    scenario: str,
    action: str,
    parts: Sequence[Part],
    recordings: list[dict],
    tagger: Callable[[str], tuple[str, str]],
) -> dict:
    """Build a SLURP record from text pieces and ``(slot type, filler)`` pairs.

    Args:
        parts: e.g. ``["wake me up at", ("time", "nine am")]``.
        recordings: ``[{"file": ..., "wer": ..., "ent_wer": ..., "status": ...}]``.
        tagger: word -> (Penn Treebank tag, lemma), for ``tokens``.
    """
    words: list[str] = []
    annotation: list[str] = []
    entities = []
    for part in parts:
        if isinstance(part, tuple):
            slot, filler = part
            fw = filler.split()
            entities.append({"span": list(range(len(words), len(words) + len(fw))), "type": slot})
            words += fw
            annotation.append(f"[{slot} : {' '.join(fw)}]")
        else:
            w = part.split()
            words += w
            annotation += w
    tokens = []
    for i, w in enumerate(words):
        pos, lemma = tagger(w)
        tokens.append({"surface": w, "id": i, "lemma": lemma, "pos": pos})
    return {
        "slurp_id": slurp_id,
        "sentence": " ".join(words),
        "sentence_annotation": " ".join(annotation),
        "intent": f"{scenario}_{action}",
        "action": action,
        "tokens": tokens,
        "scenario": scenario,
        "recordings": recordings,
        "entities": entities,
    }
