"""eSpeak NG through ctypes, from the library and voices that the PyPI package ``espeakng-loader``
ships.

The binding follows ``speak_lib.h`` (API revision 13): the library is initialised once per process
in ``AUDIO_OUTPUT_SYNCHRONOUS`` mode, so :c:func:`espeak_Synth` returns only when the whole text
has been rendered, and the audio arrives in 16-bit blocks through a synth callback that appends
them to a list. The library's state (voice, parameters, random generator) is process-global, so
:func:`synthesize` sets all of it for every call and is not thread-safe; use processes for
parallelism.

Determinism: eSpeak's noise sources (aspiration, frication, Klatt) draw from an internal random
generator seeded from the clock at initialisation, and the speechPlayer back end from libc's
``rand()``. :func:`synthesize` reseeds both before each utterance, so the same voice, parameters
and text give the same samples whatever was synthesised before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from dataclasses import dataclass

import numpy as np

# --- speak_lib.h facts ------------------------------------------------------------------------
AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: PLAYBACK=0, RETRIEVAL=1, SYNCHRONOUS=2
POS_CHARACTER = 1  # espeak_POSITION_TYPE
espeakCHARS_UTF8 = 1
espeakINITIALIZE_DONT_EXIT = 0x8000
EE_OK = 0
# espeak_PARAMETER
espeakRATE = 1
espeakVOLUME = 2
espeakPITCH = 3
espeakRANGE = 4
espeakWORDGAP = 7
RATE_MINIMUM, RATE_MAXIMUM = 80, 450


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT``; only its layout matters here (the callback ignores events)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class EspeakError(RuntimeError):
    """The eSpeak NG library could not be loaded, initialised, or refused a request."""


@dataclass(frozen=True)
class VoiceSettings:
    """Everything that selects how eSpeak speaks one utterance.

    Attributes:
        voice: a language voice with an optional variant, e.g. ``"en-us+m3"``.
        rate: words per minute (80..450).
        pitch: base pitch 0..100 (50 = the voice's default).
        range: pitch range 0..100 (0 = monotone, 50 = normal).
        word_gap: extra pause between words, in units of 10 ms.
    """

    voice: str
    rate: int = 175
    pitch: int = 50
    range: int = 50
    word_gap: int = 0


class _Engine:
    """The process's one eSpeak NG instance."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise EspeakError("the package espeakng-loader is not installed") from e
        lib_path = espeakng_loader.get_library_path()
        data_path = espeakng_loader.get_data_path()
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as e:
            raise EspeakError(f"cannot load eSpeak NG library {lib_path}: {e}") from e
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        lib.espeak_Info.restype = ctypes.c_char_p
        self._set_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._set_seed is not None:
            self._set_seed.argtypes = [ctypes.c_long]
            self._set_seed.restype = ctypes.c_int
        libc_name = ctypes.util.find_library("c")
        self._libc = ctypes.CDLL(libc_name) if libc_name else None

        rate = lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), espeakINITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (returned {rate}) with data {data_path}")
        self.sample_rate = int(rate)
        self.version = lib.espeak_Info(None).decode()
        self.data_path = data_path
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: C holds only the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib
        self._voice: str | None = None

    def _on_audio(self, wav, num_samples, events) -> int:  # noqa: ARG002 - C signature
        if num_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0  # 0 = continue synthesis

    def _check(self, status: int, what: str) -> None:
        if status != EE_OK:
            raise EspeakError(f"{what} failed with espeak_ERROR {status}")

    def synthesize(self, text: str, settings: VoiceSettings, seed: int = 0) -> np.ndarray:
        if settings.voice != self._voice:
            self._check(
                self._lib.espeak_SetVoiceByName(settings.voice.encode()),
                f"espeak_SetVoiceByName({settings.voice!r})",
            )
            self._voice = settings.voice
        rate = int(min(max(settings.rate, RATE_MINIMUM), RATE_MAXIMUM))
        for param, value in (
            (espeakRATE, rate),
            (espeakPITCH, int(min(max(settings.pitch, 0), 100))),
            (espeakRANGE, int(min(max(settings.range, 0), 100))),
            (espeakWORDGAP, int(max(settings.word_gap, 0))),
            (espeakVOLUME, 100),
        ):
            self._check(self._lib.espeak_SetParameter(param, value, 0), f"espeak_SetParameter({param})")
        seed = int(seed) & 0x7FFFFFFF
        if self._set_seed is not None:
            self._set_seed(seed)
        if self._libc is not None:
            self._libc.srand(ctypes.c_uint(seed))
        data = text.encode("utf-8") + b"\0"
        buf = ctypes.create_string_buffer(data, len(data))
        self._chunks = []
        status = self._lib.espeak_Synth(
            buf, len(data), 0, POS_CHARACTER, 0, espeakCHARS_UTF8, None, None
        )
        self._check(status, f"espeak_Synth({text[:40]!r})")
        self._check(self._lib.espeak_Synchronize(), "espeak_Synchronize")
        chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(chunks).astype(np.int16, copy=False)


_engine: _Engine | None = None
_engine_pid: int | None = None
_lock = threading.Lock()


def _get_engine() -> _Engine:
    global _engine, _engine_pid
    with _lock:
        if _engine is None or _engine_pid != os.getpid():
            _engine = _Engine()
            _engine_pid = os.getpid()
        return _engine


def sample_rate() -> int:
    """The rate (Hz) of the audio :func:`synthesize` returns (22050 for eSpeak NG)."""
    return _get_engine().sample_rate


def version() -> str:
    """The eSpeak NG library version string, e.g. ``"1.52.0"``."""
    return _get_engine().version


def synthesize(text: str, settings: VoiceSettings, seed: int = 0) -> np.ndarray:
    """Render ``text`` with ``settings``.

    Args:
        text: UTF-8 text (plain, no SSML).
        settings: voice and prosody.
        seed: reseeds eSpeak's noise generators, for repeatable output.

    Returns:
        int16 array [S] at :func:`sample_rate` Hz.
    """
    engine = _get_engine()
    with _lock:
        return engine.synthesize(text, settings, seed)
