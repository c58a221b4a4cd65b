"""NEST pretraining end to end on tiny data: the loss goes down, checkpoints resume from their
step, .nemo files have NeMo's layout and load back with identical outputs, init_from works,
and the CLI and config resolution."""

from __future__ import annotations

import csv
import io
import json
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from click.testing import CliRunner

from nestbench.cli import main
from nestbench.config import ConfigError
from nestbench.encoders import load_encoder
from nestbench.encoders.nemo_writer import save_nemo
from nestbench.encoders.nest import load_nest
from nestbench.pretrain.config import build_model, resolve_pretrain_config
from nestbench.pretrain.evaluate import masked_token_accuracy, nearest_visible_tokens
from nestbench.pretrain.train import pretrain
from tests.test_nemo_fixtures import FIXTURE_DIR

NEMO_FIXTURE = FIXTURE_DIR / "nemo_nest_tiny" / "model.nemo"


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    """12 utterances (2-3 s) of harmonic tones changing pitch every 0.2 s; train.json."""
    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(12):
        dur = 2.0 + 0.25 * (i % 5)
        t = np.arange(int(dur * 16000)) / 16000
        x = np.zeros_like(t)
        for s in range(0, len(t), 3200):
            f0 = rng.choice([150, 220, 330, 440, 550])
            x[s : s + 3200] = sum(
                np.sin(2 * np.pi * f0 * k * t[s : s + 3200]) / k for k in (1, 2, 3)
            )
        x = 0.1 * x + 0.005 * rng.standard_normal(len(t))
        sf.write(root / f"u{i}.wav", x.astype(np.float32), 16000, subtype="PCM_16")
        lines.append(json.dumps({"audio_filepath": f"u{i}.wav", "duration": dur}))
    (root / "train.json").write_text("\n".join(lines) + "\n")
    return root / "train.json"


def _cfg(tones: Path, out: Path, *overrides: str):
    return resolve_pretrain_config(
        "tiny_cpu",
        [str(tones)],
        [
            f"out={out}",
            "model.num_classes=64",
            "trainer.progress=false",
            "trainer.threads=1",
            "optim.sched.warmup_steps=10",
            "trainer.log_every_n_steps=5",
            *overrides,
        ],
    )


def _pretrain_outputs(*models):
    """Two utterances (1.5 s, 1.06 s) and each model's forward_pretrain on them under the same
    masking seed: (wav [2, S], lens [2], outputs)."""
    wav = 0.1 * torch.randn(2, 24000, generator=torch.Generator().manual_seed(0))
    lens = torch.tensor([24000, 17000])
    outs = []
    for m in models:
        torch.manual_seed(3)
        outs.append(m.forward_pretrain(wav, lens))
    return wav, lens, outs


def _steps_logged(out: Path) -> list[int]:
    steps = []
    for path in sorted((out / "logs").glob("version_*/metrics.csv")):
        with open(path) as f:
            steps += [int(r["step"]) for r in csv.DictReader(f) if r.get("train_loss")]
    return steps


def test_short_pretraining_lowers_the_loss(tones, tmp_path):
    from nestbench.data.manifest import read_manifest

    cfg = _cfg(
        tones,
        tmp_path / "run",
        "trainer.max_steps=40",
        "trainer.val_check_interval=20",
        f"data.val=[{tones}]",
    )
    torch.manual_seed(int(cfg.seed))
    records = read_manifest(tones)
    before = masked_token_accuracy(build_model(cfg), records, seed=1)["loss"]
    result = pretrain(cfg)
    assert result.global_step == 40
    after = masked_token_accuracy(load_nest(result.nemo_path), records, seed=1)
    assert after["loss"] < before - 0.3, (before, after)
    assert after["accuracy"] > after["chance"]
    # the accuracy splits exactly into majority-token and other targets
    n_top = after["majority"] * after["scored_steps"]
    split = (
        after["accuracy_majority_targets"] * n_top
        + after["accuracy_other_targets"] * (after["scored_steps"] - n_top)
    ) / after["scored_steps"]
    assert split == pytest.approx(after["accuracy"])
    assert 0.0 <= after["copy_nearest"] <= 1.0
    assert (tmp_path / "run" / "best.nemo").is_file()
    assert result.val_loss is not None and 0 <= result.val_acc <= 1
    log = (tmp_path / "run" / "pretrain.log").read_text()
    assert "step 40/40" in log and "val_loss" in log


def test_resume_continues_from_the_saved_step(tones, tmp_path):
    out = tmp_path / "run"
    first = pretrain(_cfg(tones, out, "trainer.max_steps=6", "trainer.checkpoint_every_n_steps=4"))
    assert first.global_step == 6
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert ckpt["global_step"] == 6  # the final state is saved too
    second = pretrain(_cfg(tones, out, "trainer.max_steps=10"))
    assert second.global_step == 10
    assert "resuming from" in (out / "pretrain.log").read_text()
    steps = _steps_logged(out)  # both sessions' logs are kept
    assert min(steps) < 6 and max(steps) >= 9 and steps == sorted(steps)
    # nothing left to do: the .nemo still records this session's config
    pretrain(_cfg(tones, out, "trainer.max_steps=10", "trainer.log_every_n_steps=3"))
    with tarfile.open(out / "last.nemo") as tar:
        made = yaml.safe_load(tar.extractfile("./model_config.yaml"))["nestbench"]
    assert made["global_step"] == 10 and made["config"]["trainer"]["log_every_n_steps"] == 3
    with pytest.raises(FileExistsError, match="resume=false"):
        pretrain(_cfg(tones, out, "trainer.max_steps=12", "resume=false"))


def test_interrupted_run_resumes_from_the_interruption(tones, tmp_path):
    import lightning as L

    class Boom(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 5:
                raise RuntimeError("interrupted")

    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="interrupted"):
        pretrain(_cfg(tones, out, "trainer.max_steps=20"), callbacks=[Boom()])
    assert (out / "checkpoints" / "interrupted.ckpt").is_file()
    result = pretrain(_cfg(tones, out, "trainer.max_steps=8"))
    assert result.global_step == 8
    assert "interrupted.ckpt" in (out / "pretrain.log").read_text()
    assert not (out / "checkpoints" / "interrupted.ckpt").exists()  # removed after success


def test_a_resumed_run_matches_the_uninterrupted_one_step_for_step(tones, tmp_path):
    """12 utterances in batches of 4: 3 batches an epoch, so both breaks fall mid-epoch; the
    resumed runs must see the same batches, masks and augmentation as the whole run."""
    import lightning as L

    class Record(L.Callback):
        def __init__(self):
            self.seen = {}  # optimizer step -> (utterance indices, loss)

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            step = trainer.global_step - 1
            self.seen[step] = (batch["index"].tolist(), float(outputs["loss"]))

    class Boom(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == 5:
                raise RuntimeError("interrupted")

    common = ("trainer.checkpoint_every_n_steps=4",)
    whole, broken = Record(), Record()
    pretrain(_cfg(tones, tmp_path / "whole", "trainer.max_steps=11", *common), [whole])
    # stopped by an exception before step 5 (interrupted.ckpt), then by max_steps after 7
    out = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="interrupted"):
        pretrain(_cfg(tones, out, "trainer.max_steps=11", *common), callbacks=[broken, Boom()])
    pretrain(_cfg(tones, out, "trainer.max_steps=7", *common), [broken])
    pretrain(_cfg(tones, out, "trainer.max_steps=11", *common), [broken])
    assert sorted(whole.seen) == sorted(broken.seen) == list(range(11))
    for step in range(11):
        (batch_a, loss_a), (batch_b, loss_b) = whole.seen[step], broken.seen[step]
        assert batch_a == batch_b, step
        assert loss_b == pytest.approx(loss_a, rel=1e-5, abs=1e-6), step
    wa, wb = load_nest(tmp_path / "whole" / "last.nemo"), load_nest(out / "last.nemo")
    for (name, x), y in zip(wa.state_dict().items(), wb.state_dict().values(), strict=True):
        assert torch.allclose(x.float(), y.float(), atol=1e-5), name


def test_nemo_file_has_nemos_layout_and_loads_back_identically(tones, tmp_path):
    cfg = _cfg(tones, tmp_path / "run", "trainer.max_steps=3", "model.num_classes=256")
    result = pretrain(cfg)
    path = result.nemo_path
    with tarfile.open(path) as tar:
        names = tar.getnames()
        config = yaml.safe_load(tar.extractfile("./model_config.yaml"))
        state = torch.load(io.BytesIO(tar.extractfile("./model_weights.ckpt").read()))
    with tarfile.open(NEMO_FIXTURE) as tar:
        ref_config = yaml.safe_load(tar.extractfile("./model_config.yaml"))
        ref_state = torch.load(io.BytesIO(tar.extractfile("./model_weights.ckpt").read()))
    assert sorted(names) == [".", "./model_config.yaml", "./model_weights.ckpt"]
    # same sizes as NeMo's own tiny fixture: identical keys, shapes and dtypes
    assert list(state) == list(ref_state)
    for k, v in ref_state.items():
        assert state[k].shape == v.shape and state[k].dtype == v.dtype, k
    assert config["target"] == ref_config["target"]
    assert config["nemo_version"] == "2.5.0"
    assert set(ref_config) <= set(config)
    for section in ("preprocessor", "masking", "quantizer", "decoder", "loss", "spec_augment"):
        assert config[section] == ref_config[section], section
    assert config["encoder"] == {**ref_config["encoder"], **config["encoder"]}
    # loads back with identical outputs, through the path NVIDIA's files take
    trained = load_nest(path)
    again = tmp_path / "again.nemo"
    save_nemo(trained, again)
    reloaded = load_nest(again)
    wav, lens, outs = _pretrain_outputs(trained, reloaded)
    assert torch.equal(outs[0]["log_probs"], outs[1]["log_probs"])
    assert torch.equal(outs[0]["tokens"], outs[1]["tokens"])
    enc = load_encoder(str(path))
    h = enc(wav, lens).hidden_states
    h_ref = trained(wav, lens)[0]
    valid = torch.arange(h[0].shape[1])[None, :] < enc(wav, lens).lengths[:, None]
    assert all(torch.equal(a[valid], b[valid]) for a, b in zip(h, h_ref, strict=True))


def test_init_from_a_nemo_checkpoint(tones, tmp_path):
    fixture = NEMO_FIXTURE.parent.parent / "nemo_nest_tiny_v24" / "model.nemo"
    masking = "model.block_size=12", "model.mask_prob=0.05", "model.mask_threshold=0.7"
    cfg = _cfg(tones, tmp_path / "run", "trainer.max_steps=2", f"init_from={fixture}", *masking)
    start = load_nest(fixture)
    assert (start.mask_processor.block_size, start.mask_processor.mask_prob) != (12, 0.05)
    result = pretrain(cfg)
    trained = load_nest(result.nemo_path)
    assert trained.generation == "2.4"  # NeMo 2.4 checkpoint: its preprocessing is kept
    assert trained.quantizer.num_classes == 256  # the checkpoint's architecture wins
    # ... but model:'s masking, which holds no weights, is what it trained (and wrote) with
    assert (trained.mask_processor.block_size, trained.mask_processor.mask_prob) == (12, 0.05)
    assert trained.loss_cfg["mask_threshold"] == 0.7
    assert torch.equal(trained.mask_processor.mask_embedding, start.mask_processor.mask_embedding)
    assert torch.equal(trained.quantizer.proj.weight, start.quantizer.proj.weight)  # frozen
    moved = trained.encoder.layers[0].feed_forward1.linear1.weight
    assert not torch.equal(moved, start.encoder.layers[0].feed_forward1.linear1.weight)


def test_init_include_keeps_the_encoder_under_new_targets(tones, tmp_path):
    masking = "model.block_size=16", "model.mask_prob=0.03"
    first = pretrain(_cfg(tones, tmp_path / "first", "trainer.max_steps=1", *masking)).nemo_path
    start = load_nest(first)
    # its Lightning checkpoint carries the model config: the same model, nothing inferred
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_ckpt = load_nest(tmp_path / "first" / "checkpoints" / "last.ckpt")
    assert (from_ckpt.mask_processor.block_size, from_ckpt.mask_processor.mask_prob) == (16, 0.03)
    assert from_ckpt.loss_cfg == start.loss_cfg
    for section in ("preprocessor", "encoder", "masking", "quantizer", "decoder", "loss"):
        assert from_ckpt.config[section] == start.config[section], section
    for a, b in zip(from_ckpt.state_dict().values(), start.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    parts = f"init_from={first}", "init_include=[preprocessor,encoder]", "model.num_classes=32"
    model = build_model(_cfg(tones, tmp_path / "x", *parts))
    assert model.quantizer.num_classes == 32 and start.quantizer.num_classes == 64
    assert model.decoder.num_classes == 32
    for name in ("encoder", "preprocessor"):
        ours, theirs = getattr(model, name).state_dict(), getattr(start, name).state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), name
    # a short run from it trains and writes the new targets' model
    trained = load_nest(
        pretrain(_cfg(tones, tmp_path / "run", *parts, "trainer.max_steps=1")).nemo_path
    )
    assert trained.quantizer.num_classes == 32
    half = pretrain(
        _cfg(tones, tmp_path / "half", *parts, "trainer.max_steps=1", "nemo_dtype=float16")
    )
    with tarfile.open(half.nemo_path) as tar:
        state = torch.load(io.BytesIO(tar.extractfile("./model_weights.ckpt").read()))
    assert state["decoder.decoder_layers.0.weight"].dtype == torch.float16
    with pytest.raises(ConfigError, match=r"encoder\..* has shape"):
        build_model(_cfg(tones, tmp_path / "x", *parts, "model.encoder.d_model=32"))
    with pytest.raises(ConfigError, match="needs init_from and a list of parts"):
        _cfg(tones, tmp_path / "x", "init_include=[encoder]")
    with pytest.raises(ConfigError, match="needs init_from and a list of parts"):
        _cfg(tones, tmp_path / "x", f"init_from={first}", "init_include=[encoders]")


def test_half_precision_nemo_files_keep_features_and_targets(tones, tmp_path):
    """nemo_dtype=float16 stores the encoder and decoder at half the size; it loads into float32
    modules with the same preprocessing and targets and outputs within float16's rounding."""
    model = build_model(_cfg(tones, tmp_path / "x", "model.num_classes=256")).eval()
    full = save_nemo(model, tmp_path / "full.nemo")
    half = save_nemo(model, tmp_path / "half.nemo", dtype="float16")
    assert half.stat().st_size < 0.6 * full.stat().st_size
    with tarfile.open(half) as tar:
        state = torch.load(io.BytesIO(tar.extractfile("./model_weights.ckpt").read()))
    for key, value in state.items():
        if key == "quantizer.codebooks":
            assert value.dtype == torch.float64
        elif value.is_floating_point():
            want = torch.float16 if key.startswith(("encoder.", "decoder.")) else torch.float32
            assert value.dtype == want, key
    a, b = load_nest(full), load_nest(half)
    assert all(p.dtype == torch.float32 for p in b.parameters())
    _, _, outs = _pretrain_outputs(a, b)
    assert torch.equal(outs[0]["tokens"], outs[1]["tokens"])  # the same targets
    assert torch.equal(outs[0]["masks"], outs[1]["masks"])
    diff = (outs[0]["log_probs"] - outs[1]["log_probs"]).abs().max()
    assert 0 < diff < 0.05
    with pytest.raises(ConfigError, match="nemo_dtype='int8'"):
        _cfg(tones, tmp_path / "x", "nemo_dtype=int8")


def test_a_config_extends_another(tmp_path):
    stage1 = resolve_pretrain_config("embedded")
    stage2 = resolve_pretrain_config("embedded_cooldown")
    assert stage2.init_from == f"{stage1.out}/last.nemo"  # stage 2 starts from stage 1
    assert (stage2.optim.lr, stage1.optim.lr) == (0.05, 0.5)  # its own keys win
    assert stage2.model == stage1.model and stage2.augment == stage1.augment
    assert stage2.data == stage1.data and stage2.optim.betas == stage1.optim.betas
    stage3 = resolve_pretrain_config("embedded_cooldown2")  # extends stage 2, which extends 1
    assert stage3.init_from == f"{stage2.out}/last.nemo" and stage3.out != stage2.out
    assert stage3.optim == stage2.optim and stage3.model == stage1.model
    (tmp_path / "a.yaml").write_text(f"extends: {tmp_path / 'b.yaml'}\nseed: 1\n")
    (tmp_path / "b.yaml").write_text(f"extends: {tmp_path / 'a.yaml'}\n")
    with pytest.raises(ConfigError, match="loops back"):
        resolve_pretrain_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: embedded\nmodel: {num_clases: 3}\n")
    with pytest.raises(ConfigError, match="c.yaml.*unknown config key 'model.num_clases'"):
        resolve_pretrain_config(tmp_path / "c.yaml")


def test_config_resolution_errors_and_cli(tones, tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'trainer.max_step'"):
        resolve_pretrain_config("tiny_cpu", [str(tones)], ["trainer.max_step=3"])
    with pytest.raises(ConfigError, match="model.encoder setting"):
        resolve_pretrain_config("tiny_cpu", [str(tones)], ["model.encoder.d_modl=3"])
    with pytest.raises(ConfigError, match="embedded"):
        resolve_pretrain_config("nope")
    with pytest.raises(ConfigError, match="no training audio"):
        resolve_pretrain_config("tiny_cpu")
    cfg = resolve_pretrain_config(
        "tiny_cpu", [str(tones)], ["model.encoder.d_model=32", "model.encoder.n_heads=2"]
    )
    model = build_model(cfg)
    assert model.encoder.cfg.d_model == 32 and model.encoder.cfg.n_layers == 3
    cli = CliRunner().invoke(
        main, ["pretrain", "--config", "embedded", "--print-config", "trainer.max_steps=7"]
    )
    assert cli.exit_code == 0, cli.output
    printed = yaml.safe_load(cli.output)
    assert printed["trainer"]["max_steps"] == 7 and printed["data"]["embedded"] == "default"
    cli = CliRunner().invoke(main, ["pretrain", "--data", str(tones), "bogus=1"])
    assert cli.exit_code != 0 and "unknown config key 'bogus'" in cli.output
    out = tmp_path / "cli"
    cli = CliRunner().invoke(
        main,
        [
            "pretrain",
            "--config",
            "tiny_cpu",
            "--data",
            str(tones),
            f"out={out}",
            "trainer.max_steps=2",
            "model.num_classes=32",
            "trainer.progress=false",
        ],
    )
    assert cli.exit_code == 0, cli.output
    assert "step 2" in cli.output and (out / "last.nemo").is_file()


def test_nearest_visible_tokens():
    tokens = torch.tensor([[5], [6], [7], [8], [9], [10]])
    visible = torch.tensor([True, False, False, False, False, True])
    # steps 1-2 are nearer step 0, 3 and 4 nearer step 5; a tie would take the earlier one
    assert nearest_visible_tokens(tokens, visible)[:, 0].tolist() == [5, 5, 5, 10, 10, 10]
    visible = torch.tensor([False, True, False, True, False, False])
    assert nearest_visible_tokens(tokens, visible)[:, 0].tolist() == [6, 6, 6, 8, 8, 8]
    none = nearest_visible_tokens(tokens, torch.zeros(6, dtype=torch.bool))
    assert (none == -1).all()


def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one(tones, tmp_path):
    import time

    out = tmp_path / "run"
    pretrain(_cfg(tones, out, "trainer.max_steps=6", "trainer.checkpoint_every_n_steps=4"))
    ckpts = out / "checkpoints"
    assert (ckpts / "step=4.ckpt").is_file()
    time.sleep(0.05)
    last = ckpts / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # killed while writing
    result = pretrain(_cfg(tones, out, "trainer.max_steps=8"))
    assert result.global_step == 8
    log = (out / "pretrain.log").read_text()
    assert f"checkpoint {last} is damaged" in log and "step=4.ckpt" in log


def test_unreadable_pretraining_audio_is_named_before_training(tones, tmp_path):
    import shutil

    from nestbench.audio import AudioError

    data = tmp_path / "tones"
    shutil.copytree(tones.parent, data)
    bad = sorted(data.rglob("*.wav"))[3]
    bad.write_bytes(b"RIFF....not audio")
    with pytest.raises(AudioError, match=rf"1 audio file\(s\) .* cannot be used: {bad}"):
        pretrain(_cfg(data / "train.json", tmp_path / "run", "trainer.max_steps=2"))
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained
