"""The semantics string NeMo's SLU model generates, and reading it back.

``{'scenario': 'alarm', 'action': 'set', 'entities': [{'type': 'time', 'filler': 'eight am'}]}``
(a Python literal, lower case). :func:`parse_semantics` gives None for output that is not such a
literal (unbalanced brackets, a missing key, a wrong type): that prediction counts as wrong.
"""

from __future__ import annotations

import ast


def semantics_string(gold: dict) -> str:
    ents = [{"type": e["type"], "filler": e["filler"]} for e in gold.get("entities") or []]
    return repr({"scenario": gold["scenario"], "action": gold["action"], "entities": ents}).lower()


def parse_semantics(text: str) -> dict | None:
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    scenario, action, ents = value.get("scenario"), value.get("action"), value.get("entities", [])
    if not isinstance(scenario, str) or not isinstance(action, str) or not isinstance(ents, list):
        return None
    entities = []
    for e in ents:
        if not (isinstance(e, dict) and isinstance(e.get("type"), str)
                and isinstance(e.get("filler"), str)):  # fmt: skip
            return None
        entities.append({"type": e["type"], "filler": e["filler"]})
    return {"scenario": scenario, "action": action, "entities": entities}
