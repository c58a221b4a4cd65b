"""Reading .nemo / .ckpt / state-dict files safely, and strict NEST loading."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import torch
import yaml

from nestbench.encoders.checkpoint import CheckpointError, read_checkpoint
from nestbench.encoders.nest import NestEncoder, load_nest
from tests.test_nemo_fixtures import FIXTURE_DIR

NEMO = FIXTURE_DIR / "nemo_nest_tiny" / "model.nemo"


@pytest.fixture(scope="module")
def fixture_parts():
    """(config text, state dict) of the fixture .nemo."""
    with tarfile.open(NEMO) as tar:
        text = tar.extractfile("./model_config.yaml").read().decode()
        state = torch.load(
            io.BytesIO(tar.extractfile("./model_weights.ckpt").read()), weights_only=True
        )
    return text, state


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def state_bytes(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def write_nemo(path: Path, text: str, state: dict, prefix: str = "./", mode: str = "w", extra=()):
    with tarfile.open(path, mode) as tar:
        add_bytes(tar, prefix + "model_config.yaml", text.encode())
        add_bytes(tar, prefix + "model_weights.ckpt", state_bytes(state))
        for member in extra:
            tar.addfile(member)
    return path


def signal():
    torch.manual_seed(0)
    return torch.randn(2, 8000) * 0.1, torch.tensor([8000, 5000])


def run(model):
    with torch.no_grad():
        return model(*signal())


def assert_same_outputs(a, b):
    (ha, la), (hb, lb) = run(a), run(b)
    assert torch.equal(la, lb)
    for x, y in zip(ha, hb, strict=True):
        torch.testing.assert_close(x, y, atol=0, rtol=0)


def test_truncated_nemo(tmp_path):
    bad = tmp_path / "half.nemo"
    data = NEMO.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="half.nemo"):
        read_checkpoint(bad)
    with pytest.raises(CheckpointError, match="half.nemo"):
        load_nest(bad)


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.nemo"
    junk.write_bytes(b"this is not a tar file at all" * 40)
    with pytest.raises(CheckpointError, match="junk.nemo"):
        read_checkpoint(junk)
    with pytest.raises(CheckpointError, match="no such"):
        read_checkpoint(tmp_path / "absent.nemo")


def test_missing_members(tmp_path, fixture_parts):
    text, state = fixture_parts
    path = tmp_path / "noweights.nemo"
    with tarfile.open(path, "w") as tar:
        add_bytes(tar, "./model_config.yaml", text.encode())
    with pytest.raises(CheckpointError, match="model_weights.ckpt"):
        read_checkpoint(path)
    path = tmp_path / "noconfig.nemo"
    with tarfile.open(path, "w") as tar:
        add_bytes(tar, "./model_weights.ckpt", state_bytes(state))
    with pytest.raises(CheckpointError, match="model_config.yaml"):
        read_checkpoint(path)


def test_bad_weights_member(tmp_path, fixture_parts):
    text, _ = fixture_parts
    path = tmp_path / "badweights.nemo"
    with tarfile.open(path, "w") as tar:
        add_bytes(tar, "./model_config.yaml", text.encode())
        add_bytes(tar, "./model_weights.ckpt", b"not a torch file")
    with pytest.raises(CheckpointError, match="badweights.nemo.*torch.load"):
        read_checkpoint(path)


def test_missing_key_is_listed(tmp_path, fixture_parts):
    text, state = fixture_parts
    state = dict(state)
    del state["encoder.layers.1.self_attn.linear_pos.weight"]
    path = write_nemo(tmp_path / "missing.nemo", text, state)
    with pytest.raises(
        CheckpointError, match="1 missing keys: encoder.layers.1.self_attn.linear_pos"
    ):
        load_nest(path)


def test_unexpected_key_is_listed(tmp_path, fixture_parts):
    text, state = fixture_parts
    state = {**state, "encoder.extra.weight": torch.zeros(3)}
    path = write_nemo(tmp_path / "extra.nemo", text, state)
    with pytest.raises(CheckpointError, match="1 unexpected keys: encoder.extra.weight"):
        load_nest(path)


def test_wrong_shape_is_reported(tmp_path, fixture_parts):
    text, state = fixture_parts
    state = {**state, "encoder.layers.0.norm_out.bias": torch.zeros(65)}
    path = write_nemo(tmp_path / "shape.nemo", text, state)
    with pytest.raises(CheckpointError, match="norm_out.bias"):
        load_nest(path)


def symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


@pytest.mark.parametrize(
    "member",
    [
        tarfile.TarInfo("../evil.txt"),
        tarfile.TarInfo("./sub/../../evil.txt"),
        tarfile.TarInfo("/etc/evil.txt"),
        symlink("link", "/etc/passwd"),
        symlink("sub/link", "../../outside"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-absolute", "symlink-escape"],
)
def test_unsafe_members_refused(tmp_path, fixture_parts, member):
    text, state = fixture_parts
    path = write_nemo(tmp_path / "unsafe.nemo", text, state, extra=[member])
    with pytest.raises(CheckpointError, match="unsafe.nemo.*unsafe"):
        read_checkpoint(path)


def test_device_member_refused(tmp_path, fixture_parts):
    text, state = fixture_parts
    dev = tarfile.TarInfo("dev")
    dev.type = tarfile.CHRTYPE
    path = write_nemo(tmp_path / "dev.nemo", text, state, extra=[dev])
    with pytest.raises(CheckpointError, match="device"):
        read_checkpoint(path)


def test_weights_as_symlink_refused(tmp_path, fixture_parts):
    text, state = fixture_parts
    path = tmp_path / "linked.nemo"
    with tarfile.open(path, "w") as tar:
        add_bytes(tar, "model_config.yaml", text.encode())
        add_bytes(tar, "real.ckpt", state_bytes(state))
        tar.addfile(symlink("model_weights.ckpt", "real.ckpt"))
    with pytest.raises(CheckpointError, match="not a regular file"):
        read_checkpoint(path)


def test_tar_gz_and_plain_member_names(tmp_path, fixture_parts):
    text, state = fixture_parts
    reference = load_nest(NEMO)
    gz = write_nemo(tmp_path / "model.nemo", text, state, prefix="", mode="w:gz")
    assert gz.read_bytes()[:2] == b"\x1f\x8b"
    assert_same_outputs(load_nest(gz), reference)


def test_float64_cast(fixture_parts):
    _, state = fixture_parts
    assert state["quantizer.codebooks"].dtype == torch.float64  # as NeMo saves it
    ckpt = read_checkpoint(NEMO)
    assert ckpt.state_dict["quantizer.codebooks"].dtype == torch.float32
    assert ckpt.nemo_version == "3.0.0"
    assert ckpt.config["encoder"]["d_model"] == 64


def test_lightning_ckpt(tmp_path, fixture_parts):
    text, state = fixture_parts
    cfg = yaml.safe_load(text)
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": state, "epoch": 3, "hyper_parameters": {"cfg": cfg}}, path)
    ckpt = read_checkpoint(path)
    assert ckpt.nemo_version == "3.0.0" and ckpt.config["encoder"]["n_layers"] == 3
    assert_same_outputs(load_nest(path), load_nest(NEMO))


def test_plain_state_dict_infers_config(tmp_path, fixture_parts):
    _, state = fixture_parts
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    with pytest.warns(UserWarning, match="inferred"):
        model = load_nest(path)
    assert model.encoder.cfg.n_layers == 3 and model.encoder.cfg.n_heads == 4
    assert model.quantizer.num_classes == 256 and model.generation == "2.5"
    assert_same_outputs(model, load_nest(NEMO))


def test_decoder_ssl_ignored(tmp_path, fixture_parts):
    text, state = fixture_parts
    state = {**state, "decoder_ssl.decoder_layers.0.weight": torch.zeros(4, 64, 1)}
    model = load_nest(write_nemo(tmp_path / "old.nemo", text, state))
    assert not any(k.startswith("decoder_ssl") for k in model.state_dict())


def test_encoder_only_checkpoint(tmp_path, fixture_parts):
    text, state = fixture_parts
    cfg = yaml.safe_load(text)
    for part in ("quantizer", "masking", "decoder"):
        del cfg[part]
    enc_state = {k: v for k, v in state.items() if k.startswith(("preprocessor.", "encoder."))}
    path = write_nemo(tmp_path / "enc.nemo", yaml.safe_dump(cfg), enc_state)
    model = load_nest(path)
    assert model.quantizer is None and model.decoder is None and model.mask_processor is None
    assert_same_outputs(model, load_nest(NEMO))
    # the full config names the SSL parts: then their keys are required
    path = write_nemo(tmp_path / "partial.nemo", text, enc_state)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_nest(path)
    # ... unless only the encoder is wanted
    enc = NestEncoder.from_checkpoint(path)
    assert enc.num_layers == 3
