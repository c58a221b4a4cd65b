"""eSpeak NG through ctypes, using the library and voices that the PyPI package ``espeakng-loader``
ships.

The binding follows ``speak_lib.h`` (API revision 13, library 1.52): the library is initialised in
``AUDIO_OUTPUT_SYNCHRONOUS`` mode, so :c:func:`espeak_Synth` returns only once the whole text has
been rendered, and the audio arrives as 16-bit blocks through a synth callback that collects them.

Determinism. eSpeak keeps synthesis state in static variables (the flutter index, the wave
phase, the noise generator seeded from the clock), so the same text rendered twice in one process
can differ by a few samples. :class:`Engine` therefore loads a *private copy* of the shared
library (an in-memory file on Linux) and, with ``fresh=True`` (the default), unloads and reloads it before every utterance
(about 3 ms): each call starts from the library's initial state, its noise generators reseeded
from ``seed``, and the output depends only on the text, the settings and the seed — not on what
was synthesised before, nor on which process did it.

The library's state is process-global, so an :class:`Engine` must not be shared between threads;
use processes for parallelism (each gets its own engine through :func:`synthesize`).
"""

from __future__ import annotations

import _ctypes
import ctypes
import ctypes.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# --- facts from speak_lib.h ---------------------------------------------------------------------
AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: PLAYBACK=0, RETRIEVAL=1, SYNCHRONOUS=2
POS_CHARACTER = 1  # espeak_POSITION_TYPE
espeakCHARS_UTF8 = 1
espeakINITIALIZE_DONT_EXIT = 0x8000
EE_OK = 0  # espeak_ERROR
# espeak_PARAMETER
espeakRATE = 1
espeakVOLUME = 2
espeakPITCH = 3
espeakRANGE = 4
espeakWORDGAP = 7
RATE_MINIMUM, RATE_MAXIMUM = 80, 450  # words per minute


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT``; declared for the callback's signature (events are not used)."""

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


# typedef int (t_espeak_callback)(short*, int, espeak_EVENT*);
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class EspeakError(RuntimeError):
    """The eSpeak NG library could not be loaded or initialised, or refused a request."""


@dataclass(frozen=True)
class VoiceSettings:
    """Everything that selects how eSpeak speaks one utterance.

    Attributes:
        voice: a language voice with an optional variant, e.g. ``"en-us+m3"``.
        rate: words per minute (clipped to 80..450).
        pitch: base pitch 0..100 (50 = the voice's default).
        range: pitch range 0..100 (0 = monotone, 50 = normal).
        word_gap: extra pause between words, in units of 10 ms.
    """

    voice: str
    rate: int = 175
    pitch: int = 50
    range: int = 50
    word_gap: int = 0


def data_path() -> Path:
    """The ``espeak-ng-data`` folder shipped by ``espeakng-loader``."""
    return Path(_loader().get_data_path())


def variant_names() -> list[str]:
    """Names of the voice variants shipped in ``espeak-ng-data/voices/!v`` (``m1``, ``f2``, ...)."""
    folder = data_path() / "voices" / "!v"
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def language_voices() -> list[str]:
    """Identifiers of the English language voices shipped (``en``, ``en-us``, ...), lower case."""
    folder = data_path() / "lang" / "gmw"
    return sorted(p.name.lower() for p in folder.iterdir() if p.name.lower().startswith("en"))


def _loader():
    try:
        import espeakng_loader
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise EspeakError("the package espeakng-loader is not installed") from e
    return espeakng_loader


class Engine:
    """One private instance of the eSpeak NG library.

    Args:
        library: path of ``libespeak-ng``; default: the one ``espeakng-loader`` ships.
        data: path of ``espeak-ng-data``; default: the one ``espeakng-loader`` ships.
    """

    def __init__(self, library: str | None = None, data: str | None = None) -> None:
        loader = _loader()
        source = library or loader.get_library_path()
        self.data_path = data or loader.get_data_path()
        self._fd: int | None = None
        self._tmpdir: str | None = None
        self._lib_path = self._private_copy(source)
        libc_name = ctypes.util.find_library("c")
        self._libc = ctypes.CDLL(libc_name) if libc_name else None
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: C holds only the pointer
        self._lib = None
        self.sample_rate = 0
        self.version = ""
        self._load()

    # -- library life cycle ------------------------------------------------------------------
    def _private_copy(self, source: str) -> str:
        """Copy the library where only this engine loads it: an anonymous in-memory file on
        Linux (gone with the process, whatever ends it), else a temporary file."""
        try:
            data = Path(source).read_bytes()
        except OSError as e:
            raise EspeakError(f"cannot read the eSpeak NG library {source}: {e}") from e
        if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
            try:
                fd = os.memfd_create("nestbench-espeak")
                os.write(fd, data)
                self._fd = fd
                return f"/proc/self/fd/{fd}"
            except OSError:
                pass
        self._tmpdir = tempfile.mkdtemp(prefix="nestbench-espeak-")
        path = os.path.join(self._tmpdir, "libespeak-ng-private" + (Path(source).suffix or ".so"))
        with open(path, "wb") as f:
            f.write(data)
        return path

    def _load(self) -> None:
        try:
            lib = ctypes.CDLL(self._lib_path)
        except OSError as e:
            raise EspeakError(f"cannot load the eSpeak NG library {self._lib_path}: {e}") from e
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,  # const void *text
            ctypes.c_size_t,  # size_t size
            ctypes.c_uint,  # unsigned int position
            ctypes.c_int,  # espeak_POSITION_TYPE position_type
            ctypes.c_uint,  # unsigned int end_position
            ctypes.c_uint,  # unsigned int flags
            ctypes.POINTER(ctypes.c_uint),  # unsigned int *unique_identifier
            ctypes.c_void_p,  # void *user_data
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_Terminate.argtypes = []
        lib.espeak_Terminate.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        lib.espeak_Info.restype = ctypes.c_char_p
        seed_fn = getattr(lib, "espeak_ng_SetRandSeed", None)
        if seed_fn is not None:
            seed_fn.argtypes = [ctypes.c_long]
            seed_fn.restype = ctypes.c_int
        self._seed_fn = seed_fn
        rate = lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode(), espeakINITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            _ctypes.dlclose(lib._handle)
            raise EspeakError(f"espeak_Initialize failed (returned {rate}), data {self.data_path}")
        lib.espeak_SetSynthCallback(self._callback)
        self.sample_rate = int(rate)
        self.version = lib.espeak_Info(None).decode()
        self._lib = lib

    def _unload(self) -> None:
        if self._lib is not None:
            self._lib.espeak_Terminate()
            _ctypes.dlclose(self._lib._handle)
            self._lib = None

    def reset(self) -> None:
        """Return the library to its freshly initialised state (unload and reload it)."""
        self._unload()
        self._load()

    def close(self) -> None:
        """Unload the library and delete the private copy."""
        self._unload()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass

    # -- synthesis ---------------------------------------------------------------------------
    def _on_audio(self, wav, num_samples, events) -> int:
        if num_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0  # 0: go on synthesising

    def _check(self, status: int, what: str) -> None:
        if status != EE_OK:
            raise EspeakError(f"{what} failed with espeak_ERROR {status}")

    def synthesize(
        self, text: str, settings: VoiceSettings, seed: int = 0, fresh: bool = True
    ) -> np.ndarray:
        """Render ``text`` with ``settings``.

        Args:
            text: UTF-8 text (plain, no SSML).
            settings: voice and prosody.
            seed: reseeds eSpeak's noise generators (and libc's ``rand``, which the
                speechPlayer back end uses).
            fresh: reload the library first, so that the output does not depend on earlier calls.

        Returns:
            int16 array [S] at :attr:`sample_rate` Hz.
        """
        if fresh:
            self.reset()
        lib = self._lib
        if lib is None:
            raise EspeakError("the engine is closed")
        self._check(
            lib.espeak_SetVoiceByName(settings.voice.encode()),
            f"espeak_SetVoiceByName({settings.voice!r})",
        )
        rate = int(min(max(settings.rate, RATE_MINIMUM), RATE_MAXIMUM))
        for param, value in (
            (espeakRATE, rate),
            (espeakPITCH, int(min(max(settings.pitch, 0), 100))),
            (espeakRANGE, int(min(max(settings.range, 0), 100))),
            (espeakWORDGAP, int(max(settings.word_gap, 0))),
            (espeakVOLUME, 100),
        ):
            self._check(lib.espeak_SetParameter(param, value, 0), f"espeak_SetParameter({param})")
        seed = int(seed) & 0x7FFFFFFF
        if self._seed_fn is not None:
            self._seed_fn(seed)
        if self._libc is not None:
            self._libc.srand(ctypes.c_uint(seed))
        data = text.encode("utf-8") + b"\0"
        buf = ctypes.create_string_buffer(data, len(data))
        self._chunks = []
        status = lib.espeak_Synth(buf, len(data), 0, POS_CHARACTER, 0, espeakCHARS_UTF8, None, None)
        self._check(status, f"espeak_Synth({text[:40]!r})")
        self._check(lib.espeak_Synchronize(), "espeak_Synchronize")
        chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(chunks).astype(np.int16, copy=False)


_engine: Engine | None = None
_engine_pid: int | None = None


def get_engine() -> Engine:
    """This process's shared :class:`Engine` (a new one after a fork)."""
    global _engine, _engine_pid
    if _engine is None or _engine_pid != os.getpid():
        _engine = Engine()
        _engine_pid = os.getpid()
    return _engine


def sample_rate() -> int:
    """The rate (Hz) of the audio :func:`synthesize` returns (22050 for eSpeak NG)."""
    return get_engine().sample_rate


def version() -> str:
    """The eSpeak NG library version, e.g. ``"1.52.0"``."""
    return get_engine().version


def synthesize(text: str, settings: VoiceSettings, seed: int = 0) -> np.ndarray:
    """Render ``text`` with ``settings`` from a fresh library state (see :meth:`Engine.synthesize`).

    Returns:
        int16 array [S] at :func:`sample_rate` Hz; the same arguments always give the same array.
    """
    return get_engine().synthesize(text, settings, seed, fresh=True)
