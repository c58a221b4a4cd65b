"""Diarization error rate (DER) and Jaccard error rate (JER) through pyannote.metrics.

Each session is scored by ``pyannote.metrics`` (optimal speaker mapping, overlapped speech
scored, only inside the session's UEM); its components (missed, false alarm and confused speech,
total reference speech; JER's speaker error and speaker count) are items of an
:class:`~nestbench.metrics.base.ItemMetric`, so the corpus value is the pooled one
(pyannote's ``abs(metric)``) and the 95% interval is a bootstrap over sessions.

Collars are pyannote's: the total width of the no-score zone around each reference boundary.
md-eval's ``-c 0.25`` (0.25 s on each side, NeMo's and CALLHOME's setting) is pyannote's
``collar=0.5``; ``der`` is collar 0 (SUPERB, DIHARD), ``der_collar25`` the md-eval ±0.25 s one.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from nestbench.data.rttm import Segment, UEMRegion
from nestbench.metrics.base import ItemMetric, _ratio

#: reported DER name -> pyannote collar (total width, seconds).
COLLARS = {"der": 0.0, "der_collar25": 0.5}


class DiarizationError(ItemMetric):
    """(missed + false alarm + confusion) / total reference speech, pooled over sessions."""

    components = ("missed", "false_alarm", "confusion", "total")

    def compute(self, totals):
        return _ratio(totals[..., 0] + totals[..., 1] + totals[..., 2], totals[..., 3])


class JaccardError(ItemMetric):
    """JER: the summed per-speaker Jaccard errors over the number of reference speakers."""

    components = ("speaker_error", "speaker_count")

    def compute(self, totals):
        return _ratio(totals[..., 0], totals[..., 1])


@dataclass(frozen=True)
class Session:
    """One scored session: its reference and hypothesis turns and its scored regions (an empty
    ``uem``: the whole of ``duration``)."""

    uri: str
    reference: Sequence[Segment]
    hypothesis: Sequence[Segment]
    uem: Sequence[UEMRegion]
    duration: float


def annotation(segments: Sequence[Segment], uri: str):
    """A ``pyannote.core.Annotation`` of speaker turns (zero-length turns left out)."""
    from pyannote.core import Annotation
    from pyannote.core import Segment as PSegment

    ann = Annotation(uri=uri)
    for i, s in enumerate(segments):
        if s.duration > 0:
            ann[PSegment(s.onset, s.end), i] = s.speaker
    return ann


def timeline(regions: Sequence[UEMRegion], uri: str, duration: float):
    """The scored regions as a ``pyannote.core.Timeline`` (the whole session without a UEM)."""
    from pyannote.core import Segment as PSegment
    from pyannote.core import Timeline

    spans = [(r.onset, r.offset) for r in regions] or [(0.0, duration)]
    return Timeline([PSegment(a, b) for a, b in spans if b > a], uri=uri)


def pyannote_inputs(session: Session) -> tuple:
    """The session as pyannote sees it: reference and hypothesis annotations and the UEM."""
    return (
        annotation(session.reference, session.uri),
        annotation(session.hypothesis, session.uri),
        timeline(session.uem, session.uri, session.duration),
    )


def session_der(session: Session, collar: float, inputs: tuple | None = None) -> dict:
    """DER components of one session at ``collar`` (pyannote's total width), seconds
    (``inputs``: :func:`pyannote_inputs` already built)."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    ref, hyp, uem = inputs or pyannote_inputs(session)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyannote warns about empty annotations
        d = DiarizationErrorRate(collar=collar, skip_overlap=False)(
            ref, hyp, uem=uem, detailed=True
        )
    return {
        "missed": d["missed detection"],
        "false_alarm": d["false alarm"],
        "confusion": d["confusion"],
        "total": d["total"],
    }


def session_jer(session: Session, collar: float = 0.0, inputs: tuple | None = None) -> dict:
    """JER components of one session: summed per-speaker error and the speaker count."""
    from pyannote.metrics.diarization import JaccardErrorRate

    ref, hyp, uem = inputs or pyannote_inputs(session)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        j = JaccardErrorRate(collar=collar, skip_overlap=False)(ref, hyp, uem=uem, detailed=True)
    return {"speaker_error": j["speaker error"], "speaker_count": j["speaker count"]}


def score_sessions(
    sessions: Sequence[Session], bootstrap: int = 1000, seed: int = 0, jer: bool = True
) -> tuple[dict, list[dict]]:
    """Corpus metrics and the per-session table.

    Returns:
        ``metrics``: ``der`` and ``der_collar25`` (percent, bootstrap 95% intervals over
        sessions), ``missed``, ``false_alarm`` and ``confusion`` (collar 0, percent of the
        reference speech), ``jer`` (collar 0, percent, with an interval), ``sessions`` and
        ``speech_seconds``; ``table``: per session, its ``uri``, ``speech_seconds`` and the
        same metrics (percent; NaN where a session has no reference speech).
    """
    if not sessions:
        raise ValueError("score_sessions: no sessions")
    per = {name: DiarizationError() for name in COLLARS}
    jaccard = JaccardError()
    table = []
    for s in sessions:
        row: dict = {"uri": s.uri}
        inputs = pyannote_inputs(s)
        for name, collar in COLLARS.items():
            der = session_der(s, collar, inputs)
            per[name].add(**der)
            errors = der["missed"] + der["false_alarm"] + der["confusion"]
            row[name] = 100 * float(_ratio(errors, der["total"]))
            if collar == 0.0:
                row["speech_seconds"] = der["total"]
                for k in ("missed", "false_alarm", "confusion"):
                    row[k] = 100 * float(_ratio(der[k], der["total"]))
                if jer:
                    j = session_jer(s, collar, inputs)
                    jaccard.add(**j)
                    row["jer"] = 100 * float(_ratio(j["speaker_error"], j["speaker_count"]))
        table.append(row)
    main = per["der"]
    totals = main.totals()
    metrics: dict = {name: m.score(bootstrap, scale=100.0, seed=seed) for name, m in per.items()}
    for k in ("missed", "false_alarm", "confusion"):
        metrics[k] = 100 * float(_ratio(totals[k], totals["total"]))
    if jer:
        metrics["jer"] = jaccard.score(bootstrap, scale=100.0, seed=seed)
    metrics["sessions"] = len(sessions)
    metrics["speech_seconds"] = round(totals["total"], 3)
    return metrics, table
