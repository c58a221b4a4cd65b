"""Subword units: a sentencepiece model trained on the training transcripts of a run.

CTC class 0 is the blank; class ``i + 1`` is sentencepiece piece ``i`` (piece 0 is ``<unk>``,
which normalised text over the ASR alphabet never needs, as sentencepiece covers every character
of its training text). No BOS/EOS pieces.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm


class Units:
    """A trained sentencepiece model as CTC classes (blank = 0)."""

    def __init__(self, model_file: str | Path):
        self.model_file = Path(model_file)
        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))

    @property
    def num_classes(self) -> int:
        """Pieces + 1 (the blank)."""
        return self.sp.get_piece_size() + 1

    def encode(self, text: str) -> list[int]:
        return [i + 1 for i in self.sp.encode(text)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.sp.decode([int(i) - 1 for i in ids if int(i) > 0])

    def pieces(self) -> list[str]:
        """The piece of each CTC class, class 0 (blank) first as ``<blank>``."""
        return ["<blank>"] + [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]

    def spell(self, word: str) -> list[str]:
        """The pieces of one word (for a decoding lexicon)."""
        return self.sp.encode(word, out_type=str)


def train_units(
    texts: Iterable[str],
    path: str | Path,
    vocab_size: int,
    model_type: str = "unigram",
    symbols: Sequence[str] = (),
) -> Units:
    """Train a sentencepiece model on ``texts`` and save it as ``path`` (``.model``).

    ``symbols`` are pieces kept whole wherever they occur (SLU's slot tags). A ``vocab_size``
    below what sentencepiece needs (every character of the texts, the symbols, ``<unk>`` and
    the word-boundary piece) is raised to that.

    ``vocab_size`` is an upper bound: a small corpus gets the pieces it supports. The file is
    written under a temporary name and renamed, so concurrent processes (DDP ranks) training the
    same model leave one whole file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("no training transcripts to train subword units on")
    plain = list(texts)
    for sym in symbols:
        plain = [t.replace(sym, " ") for t in plain]
    needed = len(set("".join(plain)) - {" "}) + len(symbols) + 2
    vocab_size = max(int(vocab_size), needed)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".units-")
    os.close(fd)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_prefix=tmp,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            hard_vocab_limit=False,
            bos_id=-1,
            eos_id=-1,
            unk_id=0,
            shuffle_input_sentence=False,
            input_sentence_size=0,
            num_threads=1,
            minloglevel=2,
            user_defined_symbols=list(symbols),
        )
        os.replace(f"{tmp}.model", path)
    finally:
        for p in (tmp, f"{tmp}.model", f"{tmp}.vocab"):
            Path(p).unlink(missing_ok=True)
    return Units(path)
