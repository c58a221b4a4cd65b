"""Fine-tuning: the encoder trains (after its frozen warm-up steps), gradient checkpointing
gives the same gradients."""

import pytest
import torch

from nestbench.encoders import load_encoder
from nestbench.runner import run
from tests.sv_helpers import SMALL_SV, make_sv_folder


def test_gradient_checkpointing_gives_the_same_gradients():
    def grads(checkpointing: bool):
        enc = load_encoder("nest-small", n_layers=2).train()
        enc.set_gradient_checkpointing(checkpointing)
        torch.manual_seed(0)  # same dropout masks
        wav = torch.randn(2, 8000, generator=torch.Generator().manual_seed(1))
        out = enc(wav, torch.tensor([8000, 6000]))
        sum(h.pow(2).mean() for h in out.hidden_states).backward()
        return {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}

    plain, ckpt = grads(False), grads(True)
    assert plain.keys() == ckpt.keys() and len(plain) > 10
    for name in plain:
        torch.testing.assert_close(plain[name], ckpt[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.fixture(scope="module")
def sv_data(tmp_path_factory):
    return make_sv_folder(tmp_path_factory.mktemp("sv"), train_speakers=4, utts=3)


def _encoder_state(result_dir):
    state = torch.load(result_dir / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    return {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}


@pytest.mark.parametrize(("freeze_steps", "changes"), [(0, True), (1000, False)])
def test_finetune_trains_the_encoder_after_its_frozen_steps(
    tmp_path, sv_data, freeze_steps, changes
):
    r, result = run(
        "sv",
        [
            *SMALL_SV,
            "trainer.max_epochs=2",
            "encoder.kwargs={n_layers: 2}",
            f"optim.freeze_encoder_steps={freeze_steps}",
            "optim.gradient_checkpointing=true",
            "optim.encoder_lr=1e-3",
        ],
        encoder="nest-small",
        mode="finetune",
        data=str(sv_data),
        out=str(tmp_path),
    )
    initial = load_encoder("nest-small", n_layers=2).state_dict()
    trained = _encoder_state(r.dir)
    assert trained.keys() == initial.keys()
    moved = max(float((trained[k].float() - initial[k].float()).abs().max()) for k in initial)
    assert (moved > 1e-6) == changes, moved
    assert result.mode == "finetune"
