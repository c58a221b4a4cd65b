"""NEST pretraining parts against spec/NEST.md: block masking statistics, quantizer targets,
masked-token loss, speaker/noise augmentation, Noam schedule, data chunking and batching."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nestbench.encoders.nest import NestModel
from nestbench.encoders.ssl_modules import RandomBlockMasking, masked_token_loss
from nestbench.pretrain.augment import AugmentConfig, SpeakerNoiseAugmentation, colored_noise
from nestbench.pretrain.data import BucketBatchSampler, Collate, NoiseBank, load_records
from nestbench.pretrain.schedule import NoamAnnealing, noam_lr
from tests.data_helpers import write_wav

# --------------------------------------------------------------------------- masking


def _runs(row: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of the runs of True in a 1-D bool tensor."""
    runs, start = [], None
    for i, v in enumerate(row.tolist() + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


def test_masking_fraction_and_blocks_match_the_spec():
    torch.manual_seed(0)
    p, block, b, t = 0.01, 40, 200, 1024
    masking = RandomBlockMasking(80, mask_prob=p, block_size=block)
    assert not masking.mask_embedding.requires_grad  # frozen
    assert abs(masking.mask_embedding.std().item() - 0.1) < 0.03  # N(0, 0.1^2)
    lengths = torch.randint(300, t + 1, (b,))
    feats = torch.randn(b, 80, t)
    masked, masks = masking(feats, lengths)
    covered = masks[:, 0, :] > 0
    assert torch.equal(masks, covered[:, None, :].expand_as(masks).float())  # all features
    # masked frames hold the embedding, others are untouched
    emb = masking.mask_embedding[None, :, None].expand_as(feats)
    assert torch.equal(masked[masks > 0], emb[masks > 0])
    assert torch.equal(masked[masks == 0], feats[masks == 0])
    expected, observed = 0.0, 0.0
    for i in range(b):
        n = int(lengths[i])
        assert not covered[i, n:].any()  # nothing past the valid length
        for _, run in _runs(covered[i, :n]):
            assert run >= block  # whole blocks of 40 (overlapping ones merge)
        # P(frame s masked) = 1 - (1 - p)^(number of possible starts in (s - 40, s])
        s = torch.arange(n)
        starts = torch.minimum(s, torch.tensor(n - block - 1)) - (s - block + 1).clamp(min=0) + 1
        expected += (1 - (1 - p) ** starts.clamp(min=0).float()).sum().item()
        observed += covered[i, :n].sum().item()
    frac_expected = expected / lengths.sum().item()
    frac_observed = observed / lengths.sum().item()
    assert abs(frac_observed - frac_expected) < 0.03, (frac_observed, frac_expected)
    assert 0.25 < frac_observed < 0.36  # about 1 - 0.99^40 = 0.33 inside long utterances


def test_masking_block_starts_are_binomial():
    """Masked frames divided by 40 under-counts overlaps; count starts with no overlap instead:
    with p tiny per frame the expected number of blocks is (L - 40) * p."""
    torch.manual_seed(1)
    masking = RandomBlockMasking(80, mask_prob=0.002, block_size=40)
    n, b = 2000, 400
    _, masks = masking(torch.zeros(b, 80, n), torch.full((b,), n))
    runs = [len(_runs(masks[i, 0] > 0)) for i in range(b)]
    mean = sum(runs) / b
    assert abs(mean - (n - 40) * 0.002) < 0.5  # 3.92 starts; overlaps are rare at this p


def test_masking_short_utterance_gets_one_block_of_8():
    masking = RandomBlockMasking(80, mask_prob=0.01, block_size=40)
    _, masks = masking(torch.zeros(2, 80, 64), torch.tensor([45, 30]))
    assert masks[0, 0].tolist() == [1.0] * 8 + [0.0] * 56
    assert masks[1, 0].tolist() == [1.0] * 8 + [0.0] * 56


# --------------------------------------------------------------------------- quantizer, loss


def _tiny(seed: int, **kw) -> NestModel:
    torch.manual_seed(seed)
    return NestModel.from_size("tiny", num_classes=kw.pop("num_classes", 64), **kw).eval()


def test_quantizer_targets_are_deterministic_and_nemo_exact():
    wav = 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    lens = torch.tensor([16000, 12000])
    a, b, other = _tiny(3), _tiny(3), _tiny(4)
    mel, mel_len, _ = a.features(wav, lens)
    t1, t2 = a.quantizer(mel), a.quantizer(mel)
    assert t1.shape == (2, mel.shape[-1] // 8, 1) and t1.dtype == torch.long
    assert torch.equal(t1, t2)
    assert torch.equal(t1, b.quantizer(b.features(wav, lens)[0]))  # same seed, same targets
    assert not torch.equal(t1, other.quantizer(mel))
    # NeMo's formulation: stack 8 frames, project, normalise, argmin of the L2 distance
    q = a.quantizer
    x = mel.transpose(1, 2).reshape(2, -1, 8 * 80).double()
    x = torch.nn.functional.normalize(x @ q.proj.weight.double().T, dim=-1)
    dist = (x[..., None] - q.codebooks.double()[0].T[None, None]).norm(dim=-2)
    valid = torch.arange(t1.shape[1])[None] < (mel_len // 8)[:, None]  # padding steps tie
    assert torch.equal(dist.argmin(-1)[valid], t1[..., 0][valid])
    assert torch.allclose(q.codebooks.norm(dim=-1), torch.ones(1, 64))  # L2-normalised codebook
    assert not any(p.requires_grad for p in q.parameters())  # frozen


def test_several_codebooks_and_loss_threshold():
    from nestbench.pretrain.config import model_config

    cfg = _pretrain_cfg(num_books=2)
    model = NestModel.from_config(model_config(cfg)).eval()
    wav = 0.1 * torch.randn(2, 32000)
    out = model.forward_pretrain(wav, torch.tensor([32000, 20000]))
    assert out["tokens"].shape[-1] == 2 and out["log_probs"].shape[-2:] == (64, 2)
    assert torch.isfinite(out["loss"])
    # only steps with > 80% of their 8 frames masked count: 7 of 8 counts, 6 of 8 does not
    log_probs = torch.log_softmax(torch.randn(1, 2, 5, 1), dim=2)
    tokens = torch.tensor([[[1], [2]]])
    masks = torch.zeros(1, 3, 16)
    masks[..., :7] = 1  # step 0: 7/8 masked
    masks[..., 8:14] = 1  # step 1: 6/8 masked
    loss = masked_token_loss(log_probs, tokens, masks)
    assert torch.isclose(loss, -log_probs[0, 0, 1, 0])


# --------------------------------------------------------------------------- augmentation


def test_augmentation_energy_ratio_segment_and_seed():
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(8, 16000, generator=g) * torch.linspace(0.1, 1.0, 8)[:, None]
    lens = torch.tensor([16000, 15000, 12000, 9000, 16000, 8000, 11000, 14000])
    audio = audio * (torch.arange(16000)[None] < lens[:, None])
    aug = SpeakerNoiseAugmentation(prob=1.0, noise_ratio=0.5)
    noisy, noisy_len, info = aug(audio, lens, torch.Generator().manual_seed(5))
    again, _, _ = aug(audio, lens, torch.Generator().manual_seed(5))
    assert torch.equal(noisy, again)  # seeded
    assert torch.equal(noisy_len, lens)
    added = noisy - audio
    for i in range(8):
        n = int(lens[i])
        s, m = int(info["start"][i]), int(info["mix_len"][i])
        assert m == int(n * 0.5)  # 50% of the length
        nz = added[i].abs() > 0
        assert not nz[:s].any() and not nz[s + m :].any()  # only inside the stretch
        e_audio = audio[i, :n].pow(2).sum() / n
        e_added = added[i, :n].pow(2).sum() / n
        ratio = 10 * math.log10(e_audio / e_added)
        assert abs(ratio - float(info["ratio_db"][i])) < 1e-3
        if info["use_noise"][i]:
            assert -5 <= float(info["ratio_db"][i]) <= 20
        else:
            assert -5 <= float(info["ratio_db"][i]) <= 5
            j = int(info["partner"][i])
            assert j != i and j >= 0
            # the overlay is a stretch of the partner's audio, scaled
            seg = added[i, s : s + m] / info["scale"][i]
            pos = (int(info["offset"][i]) + torch.arange(m)) % int(lens[j])
            assert torch.allclose(seg, audio[j, pos], atol=1e-4)


def test_augmentation_probability_and_single_utterance():
    audio = torch.randn(64, 4000)
    lens = torch.full((64,), 4000)
    _, _, info = SpeakerNoiseAugmentation(prob=0.5)(audio, lens, torch.Generator().manual_seed(0))
    assert 16 < int(info["applied"].sum()) < 48
    assert 16 < int(info["use_noise"].sum()) < 48
    noisy, _, _ = SpeakerNoiseAugmentation(prob=0.0)(audio, lens, torch.Generator())
    assert torch.equal(noisy, audio)
    _, _, one = SpeakerNoiseAugmentation(prob=1.0, noise_ratio=0.0)(
        audio[:1], lens[:1], torch.Generator()
    )
    assert bool(one["use_noise"][0])  # a batch of one can only get noise
    with pytest.raises(ValueError, match="prob"):
        AugmentConfig(prob=2.0)


def test_rooms_reverberate_the_input_with_a_decaying_tail():
    audio = torch.zeros(6, 16000)
    audio[:, 4000] = 1.0  # an impulse: the output is the room's response
    lens = torch.tensor([16000, 16000, 12000, 16000, 9000, 16000])
    rooms = SpeakerNoiseAugmentation(prob=0.0, reverb_prob=1.0, min_rt60=0.3, max_rt60=0.3)
    wet, wet_len, info = rooms(audio, lens, torch.Generator().manual_seed(3))
    again, _, _ = rooms(audio, lens, torch.Generator().manual_seed(3))
    assert torch.equal(wet, again) and torch.equal(wet_len, lens)
    assert torch.allclose(info["rt60"], torch.full((6,), 0.3))
    for i in range(6):
        n = int(lens[i])
        assert not wet[i, n:].any()  # nothing spills into the padding
        assert wet[i, :4000].abs().max() < 1e-6 and wet[i, 4000] == pytest.approx(1.0, abs=1e-6)
        tail = wet[i, 4000 + 160 : n]  # the reverberant tail decays (60 dB in RT60)
        early, late = tail[:800].pow(2).mean(), tail[2400:3200].pow(2).mean()
        assert 0 < late < early
    with pytest.raises(ValueError, match="reverb_prob"):
        AugmentConfig(reverb_prob=1.5)


def test_babble_is_other_utterances_of_the_batch_at_unit_energy():
    from nestbench.pretrain.augment import babble_of_batch

    audio = torch.zeros(4, 10)
    for i in range(4):
        audio[i, : 4 + i] = float(i + 1)  # row i: constant i + 1 over 4 + i samples
    lens = torch.tensor([4, 5, 6, 7])
    bab = babble_of_batch(audio, lens, talkers=2)
    # row 0 = unit-energy rows 1 and 2: ones over 5 and 6 samples, summed
    expected = torch.zeros(10)
    expected[:5] += 1.0
    expected[:6] += 1.0
    assert torch.allclose(bab[0], expected)
    assert torch.allclose(
        babble_of_batch(audio, lens, talkers=9)[0], babble_of_batch(audio, lens, talkers=3)[0]
    )  # at most the B - 1 others
    g = torch.Generator().manual_seed(0)
    speech = torch.randn(8, 8000)
    l8 = torch.full((8,), 8000)
    aug = SpeakerNoiseAugmentation(prob=1.0, noise_ratio=1.0, babble_ratio=1.0, babble_talkers=3)
    noisy, _, info = aug(speech, l8, g)
    assert info["babble"].all()
    for i in range(8):  # the overlay is babble of the others, at the drawn energy ratio
        s, m = int(info["start"][i]), int(info["mix_len"][i])
        added = (noisy[i] - speech[i])[s : s + m] / info["scale"][i]
        bab8 = babble_of_batch(speech, l8, 3)[i]
        pos = (int(info["offset"][i]) + torch.arange(m)) % 8000
        assert torch.allclose(added, bab8[pos], atol=1e-4)


def test_colored_noise_slopes():
    g = torch.Generator().manual_seed(0)
    noise = colored_noise(3, 16000, torch.tensor([0.0, 1.0, 2.0]), g)
    assert torch.allclose(noise.pow(2).mean(1), torch.ones(3), atol=1e-4)
    spec = torch.fft.rfft(noise, dim=1).abs().pow(2)
    low, high = spec[:, 10:200].mean(1), spec[:, 4000:8000].mean(1)
    tilt = (low / high).log10()
    assert tilt[0] < tilt[1] < tilt[2]  # white < pink < brown


def test_noise_manifest(tmp_path):
    write_wav(tmp_path / "n1.wav", 2.0)
    (tmp_path / "noise.json").write_text(json.dumps({"audio_filepath": "n1.wav", "duration": 2.0}))
    bank = NoiseBank([tmp_path / "noise.json"])
    items = [(0, torch.randn(8000)), (1, torch.randn(48000))]
    batch = Collate(bank, seed=0)(items)
    assert batch["noise"].shape[0] == 2 and batch["noise_len"].tolist() == [8000, 32000]
    noisy, _, info = SpeakerNoiseAugmentation(prob=1.0, noise_ratio=1.0)(
        batch["audio"], batch["audio_len"], torch.Generator(), batch["noise"], batch["noise_len"]
    )
    assert info["use_noise"].all() and (noisy != batch["audio"]).any()


# --------------------------------------------------------------------------- schedule


def _nemo_noam(initial_lr, step, d_model, warmup, min_lr):
    """NeMo's NoamAnnealing._noam_annealing, transcribed."""
    step = max(1, step)
    mult = d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)
    out = initial_lr * mult
    return max(out, min_lr) if step > warmup else out


def test_noam_schedule_matches_nemo():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=5.0)
    sched = NoamAnnealing(opt, d_model=512, warmup_steps=100, min_lr=1e-4)
    seen = []
    for step in range(400):
        seen.append(opt.param_groups[0]["lr"])
        assert math.isclose(seen[-1], _nemo_noam(5.0, step, 512, 100, 1e-4), rel_tol=1e-9)
        opt.step()
        sched.step()
    assert max(seen) == pytest.approx(5.0 / math.sqrt(512 * 100))  # peak at the warmup step
    assert noam_lr(10**9, 5.0, 512, 100, 1e-4) == 1e-4  # floor after warmup
    opt2 = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert NoamAnnealing(opt2, 64, warmup_ratio=0.1, max_steps=1000).warmup_steps == 100


# --------------------------------------------------------------------------- data


def test_load_records_chunks_and_filters(tmp_path):
    lines = [
        {"audio_filepath": "a.wav", "duration": 0.5},
        {"audio_filepath": "b.wav", "duration": 5.0},
        {"audio_filepath": "c.wav", "duration": 25.0, "offset": 1.0},
    ]
    (tmp_path / "m.json").write_text("\n".join(json.dumps(x) for x in lines))
    recs = load_records([tmp_path / "m.json"], min_duration=1.0, max_duration=10.0)
    assert [r["duration"] for r in recs] == pytest.approx([5.0] + [25 / 3] * 3)
    assert [r.get("offset") for r in recs] == pytest.approx([None, 1.0, 1 + 25 / 3, 1 + 50 / 3])
    assert recs[0]["audio_filepath"] == str(tmp_path / "b.wav")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_records([tmp_path / "nope.json"])


def test_bucket_batch_sampler_epochs_and_ranks():
    durs = [float(i % 17) for i in range(103)]
    full = BucketBatchSampler(durs, 8, seed=1, drop_last=False, bucket_batches=3)
    full.set_epoch(0)
    batches = list(full)
    assert sorted(i for b in batches for i in b) == list(range(103))
    full.set_epoch(1)
    assert list(full) != batches
    ranks = [BucketBatchSampler(durs, 8, seed=1, rank=r, world_size=3) for r in range(3)]
    got = [list(s) for s in ranks]
    assert len({len(g) for g in got}) == 1  # as many batches on every rank
    flat = [i for g in got for b in g for i in b]
    assert len(flat) == len(set(flat))  # disjoint
    assert all(len(b) == 8 for g in got for b in g)


def test_bucket_batch_sampler_state_resumes_mid_epoch():
    durs = [float(i % 7) + 1 for i in range(40)]
    whole = BucketBatchSampler(durs, 4, seed=2, bucket_batches=2)
    whole.set_epoch(3)
    batches = list(whole)
    cut = BucketBatchSampler(durs, 4, seed=2, bucket_batches=2)
    cut.set_epoch(3)
    it = iter(cut)
    for _ in range(4):
        next(it)
        cut.consumed += 1  # what ConsumedBatches does after each trained batch
    state = cut.state_dict()
    assert state == {"epoch": 3, "consumed": 4}
    fresh = BucketBatchSampler(durs, 4, seed=2, bucket_batches=2)
    fresh.load_state_dict(state)
    fresh.set_epoch(3)  # the trainer sets the (same) epoch again before iterating
    assert list(fresh) == batches[4:] and len(fresh) == len(batches)
    assert fresh.consumed == 4
    assert list(fresh) == batches  # the skip applies once; a new pass is the whole epoch


# --------------------------------------------------------------------------- helpers


def _pretrain_cfg(**model):
    from nestbench.pretrain.config import resolve_pretrain_config

    overrides = ["model.num_classes=64"] + [f"model.{k}={v}" for k, v in model.items()]
    return resolve_pretrain_config("tiny_cpu", ["/dev/null"], overrides)
