"""The shared parts of the Task contract: duration batching, windows and stitching, the metric
shape with its bootstrap, the result schema, typed configs, layer scales."""

import json

import jiwer
import numpy as np
import pytest
import torch

from nestbench.config import ConfigError, resolve_run_config
from nestbench.featurizer import Featurizer
from nestbench.metrics.base import F1, Accuracy, ErrorRate, Score, bootstrap_interval
from nestbench.result import SCHEMA_VERSION, ResultError, RunResult
from nestbench.sampler import BucketBatchSampler, duration_batches
from nestbench.windows import cut_windows, stitch_frames, window_starts

# -- batching by count and seconds ------------------------------------------------------------


def test_duration_batches_by_count_and_by_seconds():
    durs = [1.0, 2.0, 3.0, 10.0, 1.0]
    assert duration_batches(durs, batch_size=2) == [[0, 1], [2, 3], [4]]
    # padded seconds = longest x members <= 6: [1, 2, 3] is 9 s, so 3 closes a batch
    assert duration_batches(durs, batch_seconds=6.0) == [[0, 1], [2], [3], [4]]
    assert duration_batches(durs, batch_size=1, batch_seconds=100) == [[i] for i in range(5)]
    with pytest.raises(ValueError, match="batch_size or batch_seconds"):
        duration_batches(durs)
    # training batches never hold a single item (BatchNorm), even past the seconds limit
    assert duration_batches([3.0] * 5, batch_seconds=5.0, min_size=2) == [[0, 1], [2, 3], [4]]
    train = BucketBatchSampler([3.0] * 8, batch_size=8, batch_seconds=5.0, min_size=2)
    assert all(len(b) == 2 for b in train)


def test_bucket_sampler_bounds_padded_seconds_and_covers_every_index():
    rng = np.random.default_rng(0)
    durs = rng.uniform(1, 35, size=200).tolist()
    sampler = BucketBatchSampler(durs, batch_size=64, batch_seconds=120.0, shuffle=True)
    batches = list(sampler)
    assert all(max(durs[i] for i in b) * len(b) <= 120.0 or len(b) == 1 for b in batches)
    evals = [
        list(BucketBatchSampler(durs, batch_seconds=120.0, shuffle=False, rank=r, world_size=3))
        for r in range(3)
    ]
    assert len({len(e) for e in evals}) == 1  # every rank gets as many batches
    assert {i for e in evals for b in e for i in b} == set(range(200))
    sampler.set_epoch(1)
    assert list(sampler) != batches  # a new order every epoch


# -- windows ----------------------------------------------------------------------------------


def test_windows_cover_the_record_and_end_at_its_end():
    assert window_starts(10.0, 4.0, 2.0) == [0.0, 2.0, 4.0, 6.0]
    assert window_starts(9.0, 4.0, 2.0) == [0.0, 2.0, 4.0, 5.0]
    assert window_starts(3.0, 4.0, 2.0) == [0.0]
    wins = cut_windows([{"audio_filepath": "a.wav", "duration": 9.0, "offset": 1.0}], 4.0, 2.0)
    assert [(w["offset"], w["duration"], w["window_start"]) for w in wins] == [
        (1.0, 4.0, 0.0),
        (3.0, 4.0, 2.0),
        (5.0, 4.0, 4.0),
        (6.0, 4.0, 5.0),
    ]
    assert all(w["window_source"] == 0 and w["audio_filepath"] == "a.wav" for w in wins)


def test_stitching_puts_window_frames_back_and_averages_overlaps():
    rate = 10.0
    recs = [{"duration": 9.0}, {"duration": 3.0}]
    wins = cut_windows(recs, 4.0, 2.0)
    truth = [np.arange(90, dtype=float), 100 + np.arange(30, dtype=float)]
    outputs = []
    for w in wins:
        first = int(round(w["window_start"] * rate))
        n = int(w["duration"] * rate) - 1  # encoders may give a frame fewer
        outputs.append(truth[w["window_source"]][first : first + n])
    stitched = stitch_frames(wins, outputs, rate, [r["duration"] for r in recs])
    assert [s.shape for s in stitched] == [(90,), (30,)]
    np.testing.assert_allclose(stitched[0][:89], truth[0][:89])  # overlaps average equal values
    assert stitched[0][89] == 88  # not covered: the last covered value
    np.testing.assert_allclose(stitched[1][:29], truth[1][:29])
    # overlapping windows that disagree are averaged
    two = [{"window_source": 0, "window_start": 0.0}, {"window_source": 0, "window_start": 0.5}]
    out = stitch_frames(two, [np.zeros(10), np.ones(10)], rate, [1.5])[0]
    np.testing.assert_allclose(out, [0] * 5 + [0.5] * 5 + [1] * 5)


# -- metrics ----------------------------------------------------------------------------------


def test_error_rate_is_corpus_level_and_matches_jiwer():
    refs = ["the cat sat", "on the mat today", "hello"]
    hyps = ["the cat sit", "on mat today now", ""]
    wer = ErrorRate()
    for r, h in zip(refs, hyps, strict=True):
        w = jiwer.process_words(r, h)
        wer.add(errors=w.substitutions + w.deletions + w.insertions, total=len(r.split()))
    assert wer.value() == pytest.approx(jiwer.wer(refs, hyps))
    assert wer.value() != pytest.approx(
        np.mean([jiwer.wer(r, h) for r, h in zip(refs, hyps, strict=True)])
    )


def test_bootstrap_interval_covers_and_shrinks_with_more_items():
    rng = np.random.default_rng(0)

    def acc(n):
        a = Accuracy()
        a.extend(np.c_[rng.random(n) < 0.7, np.ones(n)])
        return a

    small, large = acc(100), acc(10000)
    lo, hi = small.interval(500)
    assert lo < small.value() < hi and lo < 0.7 < hi
    lo2, hi2 = large.interval(500)
    assert hi2 - lo2 < (hi - lo) / 5
    s = small.score(200, scale=100)
    assert isinstance(s, Score) and s.to_dict()["value"] == pytest.approx(100 * small.value())
    assert small.score(0).to_dict().keys() == {"value"}  # no interval asked for


def test_f1_and_a_statistic_of_weights():
    f1 = F1()
    f1.add(tp=3, fp=1, fn=0)
    f1.add(tp=1, fp=0, fn=2)
    assert f1.value() == pytest.approx(2 * 4 / (2 * 4 + 1 + 2))
    # a statistic that is not a sum (the median of values) through the same bootstrap
    x = np.arange(101.0)
    lo, hi = bootstrap_interval(
        lambda w: np.array([np.median(np.repeat(x, r.astype(int))) for r in w]), 101, 300
    )
    assert lo < 50 < hi
    # strata keep each group's size in every resample
    strata = np.r_[np.zeros(10), np.ones(90)]
    lo, hi = bootstrap_interval(lambda w: w[:, :10].sum(1), 100, 50, strata=strata)
    assert lo == hi == 10


# -- result schema ----------------------------------------------------------------------------


def _result(**kw):
    base = dict(
        task="t",
        encoder="e",
        mode="frozen",
        seed=0,
        run_id="x",
        primary_metric="m",
        lower_is_better=True,
        metrics={"test": {"m": Score(1.5, (1.0, 2.0)), "n": 3}},
        eval_splits=["test"],
    )
    return RunResult(**{**base, **kw})


def test_result_round_trip_and_metric_shape(tmp_path):
    r = _result()
    r.write(tmp_path / "result.json")
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["schema"] == SCHEMA_VERSION
    assert data["metrics"] == {"test": {"m": {"value": 1.5, "ci95": [1.0, 2.0]}, "n": {"value": 3}}}
    back = RunResult.read(tmp_path / "result.json")
    assert back == r and back.value() == 1.5


def test_result_of_another_schema_is_refused(tmp_path):
    path = tmp_path / "result.json"
    path.write_text(json.dumps({**_result().to_dict(), "schema": 0}))
    with pytest.raises(ResultError, match="result schema 0, this nestbench reads schema 1"):
        RunResult.read(path)
    path.write_text("{")
    with pytest.raises(ResultError, match="not a readable result"):
        RunResult.read(path)


# -- typed configs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochs=abc", r"trainer.max_epochs: Value 'abc' .* Integer"),
        ("trainer.batch_size=0", r"trainer.batch_size: expected a value >= 1, got 0"),
        ("trainer.batch_seconds=-3", r"trainer.batch_seconds: expected a value > 0"),
        ("cache.layers=[-1]", r"cache.layers: expected a value >= 0, got -1"),
        ("mode=train", r"mode: expected one of frozen, finetune, got 'train'"),
        ("optim.lr=fast", r"optim.lr: Value 'fast' .* Float"),
        ("sv.margin=wide", r"sv.margin: Value 'wide' .* Float"),
        ("sv.embedding_dim=0", r"sv.embedding_dim: expected a value >= 1"),
        ("trainer.max_epoch=3", r"unknown config key 'trainer.max_epoch'.*max_epochs"),
        ("trainer.devices=0", r"trainer.devices: expected auto, -1 or a count >= 1, got 0"),
        ("sv=null", r"sv: expected a section of keys, got None"),
    ],
)
def test_bad_config_values_fail_at_resolution_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve_run_config("sv", [override])


def test_resolved_config_is_typed():
    cfg = resolve_run_config("sv", ["trainer.max_epochs=7", "optim.lr=1e-3"])
    assert cfg.trainer.max_epochs == 7 and isinstance(cfg.optim.lr, float)
    assert isinstance(cfg.sv.embedding_dim, int)


def test_cache_layers_out_of_range_for_the_encoder(tmp_path):
    from nestbench.runner import check_layers
    from tests.toy_encoders import FramesEncoder

    cfg = resolve_run_config("sv", ["cache.layers=[0,99]"])
    with pytest.raises(ConfigError, match=r"cache.layers: \[0, 99\] .* of toy-frames \(0..2\)"):
        check_layers(cfg, FramesEncoder())


# -- layer scales -----------------------------------------------------------------------------


def test_effective_shares_weigh_the_softmax_by_each_layers_scale():
    f = Featurizer(2, 4).train()
    x = torch.stack([100 * torch.ones(1, 5, 4), torch.ones(1, 5, 4)])  # layer 0 is 100x larger
    f(x)
    assert f.layer_scales().tolist() == pytest.approx([100.0, 1.0])
    assert f.weights().tolist() == pytest.approx([0.5, 0.5])
    assert f.effective_shares().tolist() == pytest.approx([100 / 101, 1 / 101])
    normed = Featurizer(2, 4, layer_norm=True).train()
    normed(x + torch.randn_like(x))
    s = normed.effective_shares()
    assert s[0] == pytest.approx(0.5, abs=0.01)  # normalised layers compete on their weights
