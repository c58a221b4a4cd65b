"""load_encoder: registered names, paths, module:callable, entry points, clear errors."""

import sys
import textwrap

import pytest

import nestbench
from nestbench.encoders import EncoderSpecError, available_encoders, load_encoder
from nestbench.encoders.registry import register_encoder

BUILT_IN = {
    "nest-small",
    "nest-medium",
    "nest-large",
    "nest-xlarge",
    "fbank",
    "wav2vec2-base",
    "hubert-base",
    "wavlm-base",
}


def test_builtins_are_registered():
    assert BUILT_IN <= set(available_encoders())


def test_module_callable_spec_passes_kwargs():
    enc = nestbench.load_encoder("tests.toy_encoders:make_toy", num_layers=3)
    assert enc.num_layers == 3 and not enc.training


def test_module_class_spec():
    enc = load_encoder("tests.toy_encoders:FramesEncoder")
    assert enc.name == "toy-frames"


def test_unknown_name_lists_valid_ones():
    with pytest.raises(EncoderSpecError) as e:
        load_encoder("nest-huge")
    msg = str(e.value)
    assert "unknown encoder 'nest-huge'" in msg
    for name in BUILT_IN:
        assert name in msg


def test_missing_checkpoint_path_is_named(tmp_path):
    with pytest.raises(EncoderSpecError, match="no such file: .*nope.nemo"):
        load_encoder(str(tmp_path / "nope.nemo"))


def test_bad_module_callable():
    with pytest.raises(EncoderSpecError, match="cannot import module 'no_such_module_xyz'"):
        load_encoder("no_such_module_xyz:thing")
    with pytest.raises(EncoderSpecError, match="has no 'nothing_here'"):
        load_encoder("tests.toy_encoders:nothing_here")


def test_object_breaking_the_contract_is_refused():
    with pytest.raises(EncoderSpecError, match="gave a dict, expected a torch.nn.Module"):
        load_encoder("tests.toy_encoders:not_an_encoder")
    with pytest.raises(EncoderSpecError, match="lacks the contract attributes name, sample_rate"):
        load_encoder("tests.toy_encoders:module_without_contract")


def test_register_encoder_decorator():
    @register_encoder("toy-registered", description="a toy")
    def _make():
        from tests.toy_encoders import FramesEncoder

        return FramesEncoder(num_layers=1)

    assert available_encoders()["toy-registered"].description == "a toy"
    assert load_encoder("toy-registered").num_layers == 1


def test_entry_point_group(tmp_path, monkeypatch):
    dist = tmp_path / "toyplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent("""
        [nestbench.encoders]
        toy-plugin = tests.toy_encoders:make_toy
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "toy-plugin" in available_encoders()
    enc = load_encoder("toy-plugin", num_layers=4)
    assert enc.num_layers == 4
    assert "tests" in sys.modules


def test_a_new_shipped_model_makes_new_nest_embedded_runs(tmp_path, monkeypatch):
    """The run id of a registered encoder depends on the files it reads: replacing the shipped
    weights changes nest-embedded's inputs (so make benchmark re-runs it), not the random
    twin's (fixed seed, same architecture) or fbank's."""
    import shutil

    import nestbench.weights
    from nestbench.fingerprint import encoder_files
    from nestbench.weights import weights_path

    before = {s: encoder_files(s, {}) for s in ("nest-embedded", "nest-embedded-random", "fbank")}
    assert set(before["nest-embedded"]) == {"shipped"}
    copy = tmp_path / "nest_embedded.nemo"
    shutil.copyfile(weights_path(), copy)
    with open(copy, "ab") as f:
        f.write(b"\0" * 512)  # another file at the same place
    monkeypatch.setattr(nestbench.weights, "weights_path", lambda name=None: copy)
    after = {s: encoder_files(s, {}) for s in before}
    assert after["nest-embedded"] != before["nest-embedded"]
    assert after["nest-embedded-random"] == before["nest-embedded-random"] == {}
    assert after["fbank"] == before["fbank"] == {}
