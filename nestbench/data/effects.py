"""Signal processing for the embedded corpus: resampling, trimming, speaker timbre, synthetic room
reverberation, coloured and babble noise, gain. Vectorised numpy/scipy on float32/float64 arrays
of shape [S]; every random choice comes from the caller's :class:`numpy.random.Generator`.
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np
from scipy.signal import fftconvolve, firwin, lfilter, resample_poly

SAMPLE_RATE = 16000


def resample(x: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``, Kaiser window), deterministic.

    Args:
        x: [S] samples; int16 input is scaled to -1..1.
    Returns:
        float64 [S * sr_out / sr_in].
    """
    if x.dtype == np.int16:
        x = x.astype(np.float64) / 32768.0
    if sr_in == sr_out:
        return np.asarray(x, dtype=np.float64)
    g = gcd(sr_in, sr_out)
    up, down = sr_out // g, sr_in // g
    return resample_poly(x, up, down, window=_lowpass(up, down))


@lru_cache(maxsize=8)
def _lowpass(up: int, down: int) -> np.ndarray:
    """The FIR filter ``resample_poly`` designs by default (Kaiser, beta 5), designed once."""
    max_rate = max(up, down)
    return firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def speech_bounds(
    x: np.ndarray, sr: int = SAMPLE_RATE, threshold_db: float = -40.0
) -> tuple[int, int]:
    """First and one-past-last sample of the region whose 10 ms frames exceed ``threshold_db``
    relative to the loudest frame. Returns (0, 0) for silence."""
    hop = max(1, sr // 100)
    n = len(x) // hop
    if n == 0:
        return 0, 0
    frames = x[: n * hop].reshape(n, hop)
    energy = (frames.astype(np.float64) ** 2).mean(axis=1)
    peak = energy.max()
    if peak <= 0:
        return 0, 0
    active = np.nonzero(energy > peak * 10 ** (threshold_db / 10))[0]
    return int(active[0] * hop), int(min(len(x), (active[-1] + 1) * hop))


def active_power(x: np.ndarray, sr: int = SAMPLE_RATE, threshold_db: float = -30.0) -> float:
    """Mean power of the 10 ms frames within ``threshold_db`` of the loudest (speech power)."""
    hop = max(1, sr // 100)
    n = len(x) // hop
    if n == 0:
        return float(np.mean(x**2)) if len(x) else 0.0
    energy = (x[: n * hop].reshape(n, hop) ** 2).mean(axis=1)
    peak = energy.max()
    if peak <= 0:
        return 0.0
    return float(energy[energy > peak * 10 ** (threshold_db / 10)].mean())


def timbre_filter(
    x: np.ndarray,
    eq_freq: float,
    eq_gain_db: float,
    eq_q: float,
    tilt_db: float,
    sr: int = SAMPLE_RATE,
) -> np.ndarray:
    """Zero-phase equaliser: a peak of ``eq_gain_db`` at ``eq_freq`` (width ~1/eq_q octaves) and
    a tilt of ``tilt_db`` per octave around 1 kHz (limited to ±12 dB)."""
    n = len(x)
    if n == 0:
        return x
    nfft = 1 << int(np.ceil(np.log2(n)))
    spec = np.fft.rfft(x, nfft)
    f = np.fft.rfftfreq(nfft, 1.0 / sr)
    octaves = np.log2(np.maximum(f, 20.0) / 1000.0)
    gain_db = np.clip(tilt_db * octaves, -12, 12)
    gain_db += eq_gain_db * np.exp(-0.5 * (np.log2(np.maximum(f, 20.0) / eq_freq) * eq_q * 2) ** 2)
    return np.fft.irfft(spec * 10 ** (gain_db / 20), nfft)[:n]


def room_impulse_response(
    rng: np.random.Generator, rt60: float, sr: int = SAMPLE_RATE, drr_db: float = 3.0
) -> np.ndarray:
    """A synthetic room: direct path, a few early reflections, and an exponentially decaying,
    low-passed noise tail whose energy decays by 60 dB in ``rt60`` seconds.

    Args:
        rt60: reverberation time, seconds.
        drr_db: direct-to-reverberant energy ratio.
    Returns:
        float64 [L], L = min(1.2 * rt60, 1) s; the direct path is at index 0 with value 1.
    """
    length = int(min(1.2 * rt60, 1.0) * sr) + 1
    t = np.arange(length) / sr
    tail = rng.standard_normal(length) * np.exp(-6.9078 * t / rt60)
    # one-pole low-pass: walls absorb high frequencies
    a = 0.6
    tail = lfilter([1 - a], [1, -a], tail)
    onset = int(0.003 * sr)
    tail[:onset] = 0.0
    for _ in range(int(rng.integers(3, 8))):  # early reflections, 3 to 30 ms
        k = int(rng.uniform(0.003, 0.03) * sr)
        tail[k] += rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.6) * np.exp(-6.9078 * k / sr / rt60)
    tail *= np.sqrt(10 ** (-drr_db / 10) / max(np.sum(tail**2), 1e-12))
    tail[0] = 1.0
    return tail


def reverberate(x: np.ndarray, rir: np.ndarray, keep_tail: bool = False) -> np.ndarray:
    """Convolve with a room impulse response; the output has ``len(x)`` samples, or
    ``len(x) + len(rir) - 1`` with ``keep_tail``."""
    y = fftconvolve(x, rir)
    return y if keep_tail else y[: len(x)]


def coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    if n == 0:
        return np.zeros(0)
    nfft = 1 << int(np.ceil(np.log2(max(n, 2))))
    spec = np.fft.rfft(rng.standard_normal(nfft))
    f = np.fft.rfftfreq(nfft)
    f[0] = f[1]
    y = np.fft.irfft(spec / f ** (exponent / 2), nfft)[:n]
    y -= y.mean()
    return y / max(np.sqrt(np.mean(y**2)), 1e-12)


def babble_noise(rng: np.random.Generator, n: int, bank: list[np.ndarray]) -> np.ndarray:
    """A random excerpt of ``n`` samples from one of the babble tracks in ``bank`` (looped when
    too short), unit RMS."""
    track = bank[int(rng.integers(len(bank)))]
    start = int(rng.integers(len(track)))
    reps = int(np.ceil((start + n) / len(track)))
    y = np.tile(track, reps)[start : start + n].astype(np.float64)
    return y / max(np.sqrt(np.mean(y**2)), 1e-12)


NOISE_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0, "floor": 1.0}


def make_noise(rng: np.random.Generator, kind: str, n: int, bank: list[np.ndarray]) -> np.ndarray:
    """Unit-RMS noise of ``kind``: ``white``, ``pink``, ``brown``, ``babble`` (an excerpt of
    ``bank``) or ``floor`` (pink, for a faint noise floor)."""
    if kind == "babble":
        return babble_noise(rng, n, bank)
    return coloured_noise(rng, n, NOISE_EXPONENTS[kind])


def add_noise(x: np.ndarray, noise: np.ndarray, snr_db: float, speech_power: float) -> np.ndarray:
    """``x`` plus ``noise`` scaled so that speech power / noise power is ``snr_db``."""
    noise_power = max(float(np.mean(noise**2)), 1e-12)
    scale = np.sqrt(speech_power / noise_power * 10 ** (-snr_db / 10))
    return x + scale * noise


def normalize_level(
    x: np.ndarray, level_db: float, speech_power: float, peak: float = 0.95
) -> np.ndarray:
    """Scale so that speech power is ``level_db`` dBFS, then down further if a peak passes
    ``peak``."""
    gain = np.sqrt(10 ** (level_db / 10) / max(speech_power, 1e-12))
    y = x * gain
    top = float(np.max(np.abs(y))) if len(y) else 0.0
    if top > peak:
        y *= peak / top
    return y


def to_int16(x: np.ndarray) -> np.ndarray:
    """Float -1..1 to int16 PCM (rounded, clipped)."""
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
