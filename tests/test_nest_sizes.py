"""NEST sizes, key names and the attention / SSL maths against plain reference formulas."""

from __future__ import annotations

import math

import pytest
import torch

from nestbench.encoders.fastconformer import (
    NEST_SIZES,
    FastConformerConfig,
    FastConformerEncoder,
    RelPositionMultiHeadAttention,
    rel_shift,
    relative_positions,
)
from nestbench.encoders.nest import NestEncoder, NestModel
from nestbench.encoders.preprocessor import generation_for_version
from nestbench.encoders.ssl_modules import (
    RandomBlockMasking,
    RandomProjectionVectorQuantizer,
    masked_token_loss,
)


def meta_encoder(size: str) -> FastConformerEncoder:
    with torch.device("meta"):
        return FastConformerEncoder(FastConformerConfig(**NEST_SIZES[size]))


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_large_has_the_released_parameter_count():
    enc = meta_encoder("large")
    # 115.07M: parameters only (BatchNorm running stats are buffers and not counted)
    assert n_params(enc) == 115_074_560
    assert len(enc.layers) == 18


@pytest.mark.parametrize(
    "size, d, layers, millions",
    [("small", 176, 16, 12.6), ("medium", 256, 16, 26.1), ("xlarge", 1024, 24, 607.3)],
)
def test_other_sizes(size, d, layers, millions):
    enc = meta_encoder(size)
    assert enc.cfg.d_model == d and len(enc.layers) == layers
    assert round(n_params(enc) / 1e6, 1) == millions
    if size == "xlarge":
        assert not enc.cfg.xscaling and enc.pos_enc.xscale is None
        assert enc.layers[0].feed_forward1.linear1.bias is None
        assert enc.pre_encode.out.bias is not None  # use_bias only affects conformer blocks


def test_large_key_names():
    keys = list(NestModel.from_size("large").state_dict())
    layer0 = [k[len("encoder.layers.0.") :] for k in keys if k.startswith("encoder.layers.0.")]
    expected = [
        "norm_feed_forward1.weight", "norm_feed_forward1.bias",
        "feed_forward1.linear1.weight", "feed_forward1.linear1.bias",
        "feed_forward1.linear2.weight", "feed_forward1.linear2.bias",
        "norm_conv.weight", "norm_conv.bias",
        "conv.pointwise_conv1.weight", "conv.pointwise_conv1.bias",
        "conv.depthwise_conv.weight", "conv.depthwise_conv.bias",
        "conv.batch_norm.weight", "conv.batch_norm.bias", "conv.batch_norm.running_mean",
        "conv.batch_norm.running_var", "conv.batch_norm.num_batches_tracked",
        "conv.pointwise_conv2.weight", "conv.pointwise_conv2.bias",
        "norm_self_att.weight", "norm_self_att.bias",
        "self_attn.pos_bias_u", "self_attn.pos_bias_v",
        "self_attn.linear_q.weight", "self_attn.linear_q.bias",
        "self_attn.linear_k.weight", "self_attn.linear_k.bias",
        "self_attn.linear_v.weight", "self_attn.linear_v.bias",
        "self_attn.linear_out.weight", "self_attn.linear_out.bias",
        "self_attn.linear_pos.weight",
        "norm_feed_forward2.weight", "norm_feed_forward2.bias",
        "feed_forward2.linear1.weight", "feed_forward2.linear1.bias",
        "feed_forward2.linear2.weight", "feed_forward2.linear2.bias",
        "norm_out.weight", "norm_out.bias",
    ]  # fmt: skip
    assert sorted(layer0) == sorted(expected)
    pre = {k for k in keys if k.startswith("encoder.pre_encode.")}
    assert pre == {f"encoder.pre_encode.{m}.{p}" for m in ("conv.0", "conv.2", "conv.3", "conv.5",
                   "conv.6", "out") for p in ("weight", "bias")}  # fmt: skip
    assert not any("pos_enc" in k for k in keys)
    assert "quantizer.codebooks" in keys and "decoder.decoder_layers.0.weight" in keys
    assert keys[:2] == ["preprocessor.featurizer.window", "preprocessor.featurizer.fb"]


def test_generation_for_version():
    assert generation_for_version("2.5.0") == "2.5"
    assert generation_for_version("2.5.0rc1") == "2.5"
    assert generation_for_version("2.6.0.dev0") == "2.5"
    assert generation_for_version("3.0.0") == "2.5"
    assert generation_for_version("2.4.0") == "2.4"
    assert generation_for_version("2.0.0rc0") == "2.4"
    assert generation_for_version("1.23.0") == "2.4"
    assert generation_for_version(None) == "2.5"
    assert generation_for_version("unknown") == "2.5"


def test_from_nemo_rejects_unsupported():
    base = {"feat_in": 80, "n_layers": 2, "d_model": 64, "n_heads": 4}
    assert FastConformerConfig.from_nemo({**base, "_target_": "x.ConformerEncoder"}).d_model == 64
    for key, value in [
        ("subsampling", "striding"),
        ("self_attention_model", "abs_pos"),
        ("conv_norm_type", "layer_norm"),
        ("att_context_size", [70, 13]),
        ("causal_downsampling", True),
    ]:
        with pytest.raises(ValueError, match=key):
            FastConformerConfig.from_nemo({**base, key: value})


def reference_attention(attn: RelPositionMultiHeadAttention, x, valid):
    """NeMo's formula written out: explicit relative indices, masked softmax."""
    b, t, d = x.shape
    h, dk = attn.h, attn.d_k
    q = attn.linear_q(x).view(b, t, h, dk)
    k = attn.linear_k(x).view(b, t, h, dk)
    v = attn.linear_v(x).view(b, t, h, dk)
    p = attn.linear_pos(relative_positions(t, d)).view(2 * t - 1, h, dk)
    ac = torch.einsum("bihd,bjhd->bhij", q + attn.pos_bias_u, k)
    i, j = torch.meshgrid(torch.arange(t), torch.arange(t), indexing="ij")
    p_ij = p[t - 1 - (i - j)]  # [T, T, H, dk]: embedding of relative position i - j
    bd = torch.einsum("bihd,ijhd->bhij", q + attn.pos_bias_v, p_ij)
    scores = (ac + bd) / math.sqrt(dk)
    mask = ~(valid[:, :, None] & valid[:, None, :])[:, None]
    probs = scores.masked_fill(mask, -10000.0).softmax(-1).masked_fill(mask, 0.0)
    out = torch.einsum("bhij,bjhd->bihd", probs, v).reshape(b, t, d)
    return attn.linear_out(out)


def test_sdpa_attention_matches_formula():
    torch.manual_seed(0)
    attn = RelPositionMultiHeadAttention(n_heads=4, d_model=64, dropout=0.0).eval()
    torch.nn.init.normal_(attn.pos_bias_u)
    torch.nn.init.normal_(attn.pos_bias_v)
    x = torch.randn(3, 17, 64, requires_grad=True)
    lengths = torch.tensor([17, 11, 5])
    valid = torch.arange(17)[None] < lengths[:, None]
    att_mask = ~(valid[:, :, None] & valid[:, None, :])
    ours = attn(x, relative_positions(17, 64), att_mask)
    ref = reference_attention(attn, x, valid)
    assert (ours - ref).abs().max() < 1e-5  # padded query rows too (both give linear_out.bias)
    g1 = torch.autograd.grad(ours[valid].sum(), [x, attn.pos_bias_v])
    g2 = torch.autograd.grad(ref[valid].sum(), [x, attn.pos_bias_v])
    for a, b in zip(g1, g2, strict=True):
        assert (a - b).abs().max() < 1e-4


def test_rel_shift_indices():
    t = 6
    bd = torch.arange(2 * 3 * t * (2 * t - 1), dtype=torch.float).view(2, 3, t, 2 * t - 1)
    out = rel_shift(bd)
    for i in range(t):
        for j in range(t):
            assert torch.equal(out[..., i, j], bd[..., i, t - 1 - i + j])


def test_tiny_encoder_contract():
    enc = NestEncoder.from_size("tiny")
    assert (enc.frame_shift, enc.num_layers, enc.hidden_size) == (1280, 3, 64)
    wav = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        out = enc(wav, torch.tensor([16000, 9000]))
    assert len(out.hidden_states) == 4
    # 100 and 56 mel frames (len // 160) -> three stride-2 convs: ceil(n / 8); note 9000
    # samples give 7 steps, not ceil(9000 / 1280) = 8
    assert out.lengths.tolist() == [13, 7]
    assert all(h.shape == (2, 14, 64) for h in out.hidden_states)  # 100 frames padded to 112


def test_quantizer_matches_l2_formula():
    torch.manual_seed(0)
    q = RandomProjectionVectorQuantizer(feat_in=80, code_dim=16, num_classes=64, num_books=2)
    mel = torch.randn(2, 80, 48)
    tokens = q(mel)
    assert tokens.shape == (2, 6, 2) and tokens.dtype == torch.long
    x = q.proj(mel.transpose(1, 2).reshape(2, 6, 640)).view(2, 6, 2, 16)
    x = torch.nn.functional.normalize(x, dim=-1)
    dist = (x[..., None, :] - q.codebooks[None, None]).norm(dim=-1)  # [B, T, H, C]
    assert torch.equal(tokens, dist.argmin(-1))


def test_block_masking():
    torch.manual_seed(0)
    m = RandomBlockMasking(feat_in=80, mask_prob=0.05, block_size=40)
    feats = torch.randn(3, 80, 800)
    masked, masks = m(feats, torch.tensor([800, 400, 30]))
    on = masks[:, 0] > 0  # [B, T]
    assert torch.equal(masks, on[:, None].expand_as(masks).float())
    assert on[0].any() and not on[1, 400:].any()
    assert on[2].tolist() == [True] * 8 + [False] * 792  # short utterance: first 8 frames
    assert torch.equal(masked.transpose(1, 2)[on], m.mask_embedding.expand(int(on.sum()), 80))
    assert torch.equal(masked.transpose(1, 2)[~on], feats.transpose(1, 2)[~on])
    runs = torch.diff(torch.cat([torch.zeros(1), on[0].float(), torch.zeros(1)]))
    lengths = (runs == -1).nonzero()[:, 0] - (runs == 1).nonzero()[:, 0]
    assert (lengths >= 40).all()  # blocks of 40 frames, possibly merged


def test_masked_token_loss():
    log_probs = torch.randn(2, 4, 10, 1).log_softmax(2)
    tokens = torch.randint(0, 10, (2, 4, 1))
    masks = torch.zeros(2, 80, 32)
    masks[0, :, 8:16] = 1.0  # step 1 of utterance 0 fully masked
    masks[1, :, 24:30] = 1.0  # 6/8 < 0.8: not counted
    loss = masked_token_loss(log_probs, tokens, masks)
    assert torch.allclose(loss, -log_probs[0, 1, tokens[0, 1, 0], 0])
    assert masked_token_loss(log_probs, tokens, torch.zeros(2, 80, 32)) == 0


def test_pretrain_step_trains():
    torch.manual_seed(0)
    model = NestModel.from_size("tiny", num_classes=32)
    model.mask_processor.mask_prob = 0.2
    wav = torch.randn(2, 32000) * 0.1
    out = model.forward_pretrain(wav, torch.tensor([32000, 20000]))
    assert out["loss"].requires_grad and out["loss"] > 0
    out["loss"].backward()
    assert model.encoder.layers[0].self_attn.linear_q.weight.grad is not None
    assert model.quantizer.proj.weight.grad is None  # frozen


def test_blocks_that_skip_the_padding_equal_blocks_that_compute_it():
    """Packing (the blocks run on the valid steps only) changes nothing on the valid steps: the
    same hidden states in eval mode and the same gradients in training (dropout off)."""
    from nestbench.encoders import fastconformer

    torch.manual_seed(0)
    model = NestModel.from_size("tiny", num_classes=32, dropout=0.0, dropout_att=0.0,
                                dropout_pre_encoder=0.0)  # fmt: skip
    wav = 0.1 * torch.randn(3, 24000)
    lens = torch.tensor([24000, 17000, 9000])
    wav = wav * (torch.arange(24000)[None] < lens[:, None])

    def run(pack: bool):
        fastconformer.PACK_PADDING = pack
        try:
            model.zero_grad()
            hidden, out_lens = model(wav, lens)
            valid = (torch.arange(hidden[0].shape[1])[None] < out_lens[:, None])[..., None]
            loss = sum((h * valid).pow(2).mean() for h in hidden)
            loss.backward()
            grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
            return [h * valid for h in hidden], out_lens, grads
        finally:
            fastconformer.PACK_PADDING = True

    model.eval()  # BatchNorm on its running statistics; gradients still flow
    packed, lens_p, grads_p = run(True)
    plain, lens_u, grads_u = run(False)
    assert torch.equal(lens_p, lens_u)
    for a, b in zip(packed, plain, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert grads_p.keys() == grads_u.keys() and grads_p
    for k in grads_p:
        torch.testing.assert_close(grads_p[k], grads_u[k], atol=1e-5, rtol=1e-4, msg=k)
    assert not packed[-1][1, int(lens_p[1]) :].any()


@pytest.mark.parametrize("factor", [2, 4, 8])
@pytest.mark.parametrize("masked", [True, False])
def test_inference_subsampling_equals_the_masked_batch_path(factor, masked):
    """Inference subsampling (each utterance alone, the first convolution made and consumed in
    chunks, channels-last) gives the training path's values: the masked batch with its masking
    passes, or the plain convolutions over the padding when unmasked; lengths from 1 step to
    several chunks."""
    from nestbench.encoders.fastconformer import ConvSubsampling

    torch.manual_seed(factor)
    sub = ConvSubsampling(80, 64, 16, factor, masked).eval()
    lens = torch.tensor([700, 1, 2, 5, 129, 257, 640])
    x = torch.randn(len(lens), 700, 80)
    with torch.no_grad():
        fast, fast_lens = sub(x, lens)
    with torch.enable_grad():
        plain, plain_lens = sub(x, lens)
    assert torch.equal(fast_lens, plain_lens)
    valid = (torch.arange(fast.shape[1])[None] < fast_lens[:, None])[..., None]
    keep = valid if masked else torch.ones_like(valid)
    torch.testing.assert_close(fast * keep, plain.detach() * keep, atol=1e-5, rtol=1e-5)


def test_an_utterance_without_frames_leaves_the_others_unchanged():
    """A batch holding an utterance too short for one output frame (0 rows in the packed
    blocks) gives the others the values they get without it, and the short one no frame."""
    torch.manual_seed(0)
    model = NestModel.from_size("tiny", num_classes=32).eval()
    wav = 0.1 * torch.randn(3, 24000)
    with torch.inference_mode():
        hidden, lens = model(wav, torch.tensor([24000, 100, 9000]))
        alone, alone_lens = model(wav[[0, 2]], torch.tensor([24000, 9000]))
    assert lens.tolist() == [alone_lens[0], 0, alone_lens[1]]
    for h, a in zip(hidden[1:], alone[1:], strict=True):
        torch.testing.assert_close(h[[0, 2]][:, : a.shape[1]], a, atol=1e-5, rtol=1e-5)
        assert not h[1].any()


def test_bf16_inference_of_a_padded_batch_stays_close_to_float32():
    """The bf16 autocast path (GPUs' default precision) runs through the packed blocks and keeps
    bf16's precision against float32."""
    torch.manual_seed(0)
    model = NestModel.from_size("tiny", num_classes=32).eval()
    wav = 0.1 * torch.randn(3, 24000)
    lens = torch.tensor([24000, 17000, 9000])
    with torch.inference_mode():
        hidden32, out_lens = model(wav, lens)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hidden16, lens16 = model(wav, lens)
    assert torch.equal(out_lens, lens16) and hidden16[-1].dtype == torch.bfloat16
    valid = (torch.arange(hidden32[-1].shape[1])[None] < out_lens[:, None])[..., None]
    err = ((hidden32[-1] - hidden16[-1].float()) * valid).abs().max()
    assert 0 < err < 0.05 * hidden32[-1].abs().max()
