"""The NEST shipped in the package: size budget, provenance (pretrained by nestbench on the
embedded corpus's training splits only), registration, default encoder, and its random twin."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import torch
import yaml

from nestbench.config import configs_dir, load_yaml
from nestbench.encoders import available_encoders, load_encoder
from nestbench.pretrain.config import resolve_pretrain_config
from nestbench.weights import EMBEDDED_NEST, weights_path

MAX_BYTES = 15_000_000


def _config() -> dict:
    with tarfile.open(weights_path()) as tar:
        return yaml.safe_load(tar.extractfile("./model_config.yaml"))


def test_shipped_file_fits_the_budget_and_has_nemos_layout():
    path = weights_path()
    assert path.name == EMBEDDED_NEST
    assert path.stat().st_size <= MAX_BYTES
    with tarfile.open(path) as tar:
        assert sorted(tar.getnames()) == [".", "./model_config.yaml", "./model_weights.ckpt"]
        state = torch.load(io.BytesIO(tar.extractfile("./model_weights.ckpt").read()))
    assert state["quantizer.codebooks"].dtype == torch.float64  # as NeMo keeps it
    config = _config()
    assert config["target"].endswith("ssl_models.EncDecDenoiseMaskedTokenPredModel")
    assert config["nemo_version"] == "2.5.0"


def test_shipped_model_was_pretrained_on_training_splits_only():
    config = _config()
    made = config["nestbench"]
    assert made["pretrained_by"] == "nestbench pretrain"
    assert made["global_step"] >= 1000
    recipe = made["config"]
    assert recipe["data"]["embedded"] == "default" and recipe["data"]["train"] == []
    assert recipe["data"]["pool_hours"] == 12  # the clean pool: training speakers only
    # the recipe in configs/pretrain/embedded_cooldown2.yaml is the one that made it: stage 3,
    # from stage 2's model (embedded_cooldown.yaml, from stage 1's, embedded.yaml; each extends
    # the one before: the same model, data and augment)
    ours = resolve_pretrain_config("embedded_cooldown2")
    stage2 = resolve_pretrain_config("embedded_cooldown")
    assert ours.init_from == f"{stage2.out}/last.nemo"
    assert stage2.init_from == f"{resolve_pretrain_config('embedded').out}/last.nemo"
    for section in ("model", "optim", "augment"):
        assert recipe[section] == _plain(ours[section]), section
    assert recipe["trainer"]["max_steps"] == ours.trainer.max_steps


def _plain(cfg):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def test_embedded_recipe_trains_on_the_clean_pool_and_validates_on_its_held_out_part(
    monkeypatch, tmp_path
):
    import nestbench.pretrain.train as train_mod

    seen = {}

    def fake_pool(size, hours, seed=0):
        seen.update(size=size, hours=hours, seed=seed)
        return tmp_path / "pool"

    monkeypatch.setattr(train_mod, "embedded_pool", fake_pool)
    train, val = train_mod.data_manifests(resolve_pretrain_config("embedded"))
    assert seen == {"size": "default", "hours": 12.0, "seed": 0}
    assert train == [str(tmp_path / "pool" / "train_manifest.json")]
    assert val == [str(tmp_path / "pool" / "val_manifest.json")]
    # without a pool, the corpus's own train splits train and its dev splits validate
    import nestbench.data.embedded as embedded

    monkeypatch.setattr(embedded, "ensure_embedded_corpus", lambda size: tmp_path / size)
    train, val = train_mod.data_manifests(
        resolve_pretrain_config("embedded", [], ["data.pool_hours=null"])
    )
    assert len(train) == 4 and all(p.endswith("train_manifest.json") for p in train)
    assert len(val) == 4 and all(p.endswith("dev_manifest.json") for p in val)
    assert not any("test" in Path(p).name for p in train + val)


def test_registered_default_encoder_and_its_random_twin():
    regs = available_encoders()
    assert "nest-embedded" in regs and "nest-embedded-random" in regs
    assert load_yaml(configs_dir() / "run.yaml").encoder.spec == "nest-embedded"
    trained = load_encoder("nest-embedded")
    random = load_encoder("nest-embedded-random")
    assert (trained.num_layers, trained.hidden_size, trained.frame_shift) == (6, 144, 1280)
    assert trained.model.config["encoder"] == random.model.config["encoder"]
    assert trained.identity()["weights"] != random.identity()["weights"]
    assert random.identity() == load_encoder("nest-embedded-random").identity()  # seeded
