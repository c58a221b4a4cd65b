"""The data fingerprint in run ids: the bytes of every file, so the same data made again or
elsewhere gives the same runs, and audio digests kept between runs outside the data folder."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

import nestbench.fingerprint as fp


@pytest.fixture()
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("NESTBENCH_DIGESTS", str(tmp_path / "digests"))
    fp._DIGESTS.clear()
    folder = tmp_path / "corpus" / "sv"
    (folder / "wav").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        sf.write(folder / "wav" / f"u{i}.wav", rng.standard_normal(1600) * 0.1, 16000)
    (folder / "test_manifest.json").write_text('{"audio_filepath": "wav/u0.wav"}\n')
    return folder


def _rewrite(path):
    """The same bytes, written again: a new modification time."""
    raw = path.read_bytes()
    path.unlink()
    path.write_bytes(raw)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_same_bytes_made_again_or_elsewhere_give_the_same_fingerprint(data, tmp_path):
    first = fp.data_fingerprint(data)
    _rewrite(data / "wav" / "u1.wav")  # regenerated: same bytes, new time
    assert fp.data_fingerprint(data) == first
    copy = tmp_path / "elsewhere" / "sv"
    shutil.copytree(data, copy)  # another machine's copy (other path, other times)
    assert fp.data_fingerprint(copy) == first
    # different audio bytes (same length) make a different fingerprint
    sf.write(data / "wav" / "u2.wav", np.zeros(1600), 16000)
    edited = fp.data_fingerprint(data)
    assert edited != first
    (data / "wav" / "u3.wav").write_bytes((data / "wav" / "u0.wav").read_bytes())  # a new file
    assert fp.data_fingerprint(data) not in (first, edited)


def test_audio_digests_are_kept_between_runs_outside_the_data(data, tmp_path, monkeypatch):
    first = fp.data_fingerprint(data)
    store = fp.digest_store(data)
    assert store.is_file() and data not in store.parents
    assert sorted(json.loads(store.read_text())["files"]) == [f"wav/u{i}.wav" for i in range(3)]
    fp._DIGESTS.clear()  # a new process
    read = []
    real = fp.file_digest
    monkeypatch.setattr(fp, "file_digest", lambda p: read.append(p.name) or real(p))
    assert fp.data_fingerprint(data) == first
    assert read == ["test_manifest.json"]  # no audio file read again
    _rewrite(data / "wav" / "u1.wav")
    read.clear()
    assert fp.data_fingerprint(data) == first and read == ["test_manifest.json", "u1.wav"]
    store.write_text("{not json")  # a damaged store is recomputed, not trusted
    read.clear()
    assert fp.data_fingerprint(data) == first and len(read) == 4
    assert json.loads(store.read_text())["folder"] == str(data.resolve())


def test_the_embedded_corpus_made_twice_has_the_same_fingerprint(tmp_path, monkeypatch):
    """What lets a fresh clone find the committed benchmark's runs done: the generator writes
    the same bytes wherever and however it runs (other folder, other worker count)."""
    from nestbench.data.embedded import ensure_embedded_corpus

    monkeypatch.setenv("NESTBENCH_DIGESTS", str(tmp_path / "digests"))
    a = ensure_embedded_corpus("tiny", root=tmp_path / "a", workers=1, progress=False)
    b = ensure_embedded_corpus("tiny", root=tmp_path / "b", workers=2, progress=False)
    for task in ("sv", "asr", "diar", "slu"):
        assert fp.data_fingerprint(a / task) == fp.data_fingerprint(b / task), task
