"""CTC decoding: greedy, or beam search through torchaudio's flashlight decoder with an optional
KenLM language model (``.arpa`` or ``.bin``) and lexicon.

Greedy: the best class per frame, repeats merged, blanks dropped. Beam search
(``torchaudio.models.decoder.ctc_decoder``, PyPI ``flashlight-text``): over the units, either
lexicon-free (any piece sequence) or, with a lexicon (``word piece piece ...`` per line), over its
words; with a word KenLM, ``lm_weight`` x log P_LM + ``word_score`` per word is added. A model
given without a lexicon gets one made of the training transcripts' words (saved in the run
folder).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from nestbench.task import TaskError

#: The word-boundary token flashlight needs in its token list; never emitted by the model.
SIL = "|"


def greedy(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """log_probs [B, T, C], lengths [B] -> per utterance the class ids (no blank 0, no repeats)."""
    best = log_probs.argmax(-1).cpu()
    out = []
    for row, n in zip(best, lengths.tolist(), strict=True):
        ids = torch.unique_consecutive(row[: int(n)]).tolist()
        out.append([i for i in ids if i != 0])
    return out


def write_lexicon(path: Path, words: Iterable[str], spell) -> Path:
    """``word p1 p2 ...`` for each distinct word (``spell(word)`` -> its pieces)."""
    lines = [f"{w} {' '.join(spell(w))}" for w in sorted(set(words)) if w]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class BeamDecoder:
    """Beam search over CTC log-probabilities whose classes are ``pieces`` (blank first)."""

    def __init__(
        self,
        pieces: list[str],
        beam_size: int = 50,
        lm: str | Path | None = None,
        lexicon: str | Path | None = None,
        lm_weight: float = 2.0,
        word_score: float = -1.0,
    ):
        try:
            from torchaudio.models.decoder import ctc_decoder
        except ImportError as e:  # pragma: no cover - flashlight-text is a dependency
            raise TaskError(
                f"asr.decoder=beam needs the PyPI package flashlight-text ({e})"
            ) from None
        for name, path in (("asr.lm", lm), ("asr.lexicon", lexicon)):
            if path is not None and not Path(path).is_file():
                raise TaskError(f"{name}: {path} is not a file")
        self.pieces = pieces
        try:
            self.decoder = ctc_decoder(
                lexicon=None if lexicon is None else str(lexicon),
                tokens=[*pieces, SIL],
                lm=None if lm is None else str(lm),
                beam_size=beam_size,
                lm_weight=lm_weight,
                word_score=word_score,
                blank_token=pieces[0],
                sil_token=SIL,
                unk_word="<unk>",
            )
        except (RuntimeError, ValueError) as e:
            what = f"asr.lm: {lm}" if lm is not None else f"asr.lexicon: {lexicon}"
            reason = " ".join(str(e).split())[-200:]
            raise TaskError(f"{what}: cannot load it ({reason})") from None

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """log_probs [B, T, C], lengths [B] -> per utterance the best hypothesis's class ids."""
        x = log_probs.detach().float().cpu()
        x = torch.cat([x, torch.full((*x.shape[:2], 1), -1e9)], dim=-1)  # SIL: never emitted
        hyps = self.decoder(x.contiguous(), lengths.cpu().to(torch.int32))
        sil = len(self.pieces)
        out = []
        for best in hyps:
            ids = best[0].tokens.tolist() if best else []
            out.append([i for i in ids if 0 < i < sil])
        return out
