"""Audio input: formats, resampling and downmixing with warnings, clear errors naming the file."""

import numpy as np
import pytest
import soundfile as sf
import torch

from nestbench.audio import AudioError, AudioFormatWarning, collate_audio, load_audio


def _tone(sr: float, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_16k_mono_wav_reads_without_warning(tmp_path, recwarn):
    path = tmp_path / "a.wav"
    sf.write(path, _tone(16000, 1.0), 16000, subtype="PCM_16")
    wav = load_audio(path)
    assert wav.dtype == torch.float32 and wav.shape == (16000,)
    assert not [w for w in recwarn if issubclass(w.category, AudioFormatWarning)]
    assert abs(float(wav.abs().max()) - 0.5) < 1e-3


def test_flac_and_segment(tmp_path):
    path = tmp_path / "a.flac"
    x = _tone(16000, 2.0)
    sf.write(path, x, 16000)
    seg = load_audio(path, offset=0.5, duration=1.0)
    assert seg.shape == (16000,)
    assert torch.allclose(seg, torch.from_numpy(x[8000:24000]), atol=1e-4)


def test_8khz_stereo_is_resampled_and_downmixed_with_warnings(tmp_path):
    path = tmp_path / "stereo8k.wav"
    left, right = _tone(8000, 1.0, 440), _tone(8000, 1.0, 440) * 0.5
    sf.write(path, np.stack([left, right], axis=1), 8000, subtype="PCM_16")
    with pytest.warns(AudioFormatWarning) as record:
        wav = load_audio(path)
    messages = " ".join(str(w.message) for w in record)
    assert "2 channels" in messages and "8000 Hz" in messages and str(path) in messages
    assert wav.shape == (16000,)
    # Downmix averages the channels: amplitude 0.75 * 0.5; the tone survives resampling.
    assert abs(float(wav[2000:14000].abs().max()) - 0.375) < 0.01
    spectrum = torch.fft.rfft(wav).abs()
    assert abs(int(spectrum.argmax()) - 440) <= 1


def test_empty_wav_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match=r"empty\.wav.*empty"):
        load_audio(path)


def test_nan_wav_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "nan.wav"
    x = _tone(16000, 0.5)
    x[100:103] = np.nan
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav.*3 non-finite"):
        load_audio(path)


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "junk.wav"
    bad.write_bytes(b"this is not audio")
    with pytest.raises(AudioError, match=r"junk\.wav: cannot read audio"):
        load_audio(bad)
    with pytest.raises(AudioError, match=r"missing\.wav"):
        load_audio(tmp_path / "missing.wav")


def test_collate_pads_with_zeros():
    wav, lens = collate_audio([torch.ones(3), torch.ones(5)])
    assert wav.shape == (2, 5) and lens.tolist() == [3, 5]
    assert wav[0, 3:].abs().sum() == 0
