"""SLURP's metrics on hand-computed cases: partial fillers at word and character distance, a
wrong type, a missing prediction, extra predicted entities, an empty gold list."""

import pytest

from nestbench.metrics.slu import (
    char_distance,
    distance_counts,
    slu_scores,
    span_counts,
    word_distance,
)


def _utt(scenario="alarm", action="set", entities=()):
    return {"scenario": scenario, "action": action,
            "entities": [{"type": t, "filler": f} for t, f in entities]}  # fmt: skip


def test_distances():
    assert word_distance("eight am", "eight pm") == 0.5
    assert word_distance("eight am", "") == 1.0 and word_distance("", "") == 0.0
    assert char_distance("eight am", "eight pm") == pytest.approx(1 / 8)
    assert char_distance("paris", "pari") == pytest.approx(1 / 5)  # over the longer one
    assert char_distance("", "") == 0.0


def test_a_partially_matching_filler():
    gold, pred = [_utt(entities=[("time", "eight am")])], [_utt(entities=[("time", "eight pm")])]
    assert span_counts(gold[0]["entities"], pred[0]["entities"]) == (0, 1, 1)
    assert distance_counts(gold[0]["entities"], pred[0]["entities"], "word") == (1, 0.5, 0.5)
    assert distance_counts(gold[0]["entities"], pred[0]["entities"], "char") == (1, 0.125, 0.125)
    m = slu_scores(gold, pred, n_resamples=0)
    assert m["span_f1"].value == 0.0
    assert m["word_f1"].value == pytest.approx(100 * 2 / (2 + 0.5 + 0.5))
    assert m["char_f1"].value == pytest.approx(100 * 2 / (2 + 0.125 + 0.125))
    # SLU-F1: tp 2, fp = fn = 0.625
    assert m["slu_f1"].value == pytest.approx(100 * 4 / (4 + 1.25))
    assert m["intent_accuracy"].value == 100.0


def test_a_wrong_type_is_a_false_positive_and_a_miss():
    gold, pred = _utt(entities=[("date", "monday")]), _utt(entities=[("time", "monday")])
    for d in ("word", "char"):
        assert distance_counts(gold["entities"], pred["entities"], d) == (0, 1, 1)
    m = slu_scores([gold], [pred], n_resamples=0)
    assert m["slu_f1"].value == 0.0 and m["span_f1"].value == 0.0


def test_a_missing_prediction_counts_as_wrong():
    gold = [_utt(entities=[("time", "nine")]), _utt("weather", "query")]
    pred = [_utt(entities=[("time", "nine")]), None]
    m = slu_scores(gold, pred, n_resamples=0)
    assert m["intent_accuracy"].value == 50.0 and m["scenario_accuracy"].value == 50.0
    assert m["span_f1"].value == 100.0  # the missing one had no gold entity
    m = slu_scores(gold[:1], [None], n_resamples=0)
    assert m["intent_accuracy"].value == 0.0 and m["span_f1"].value == 0.0


def test_extra_predicted_entities_and_wrong_labels():
    gold = _utt(entities=[("place", "paris")])
    pred = _utt("alarm", "query", entities=[("place", "paris"), ("place", "london")])
    assert span_counts(gold["entities"], pred["entities"]) == (1, 1, 0)
    # the second 'place' finds no unmatched gold 'place': a whole false positive
    assert distance_counts(gold["entities"], pred["entities"], "word") == (1, 1, 0)
    m = slu_scores([gold], [pred], n_resamples=0)
    assert m["span_f1"].value == pytest.approx(100 * 2 / 3)
    assert m["scenario_accuracy"].value == 100.0 and m["action_accuracy"].value == 0.0
    assert m["intent_accuracy"].value == 0.0


def test_the_closest_gold_filler_of_the_type_is_matched():
    gold = _utt(entities=[("person", "anna maria"), ("person", "bob")])
    pred = _utt(entities=[("person", "bob")])
    assert distance_counts(gold["entities"], pred["entities"], "word") == (1, 0, 1)


def test_an_empty_gold_list_adds_nothing_and_intervals_hold_the_value():
    case = [_utt(entities=[("time", "eight am")])], [_utt(entities=[("time", "eight pm")])]
    alone = slu_scores(*case, n_resamples=0)
    both = slu_scores([_utt(), *case[0]], [_utt(), *case[1]], n_resamples=0)
    assert both["slu_f1"].value == pytest.approx(alone["slu_f1"].value)
    assert slu_scores([_utt()], [_utt()], n_resamples=0)["slu_f1"].value == 0.0  # scorer's rule
    gold = [_utt(entities=[("time", f"t{i % 3}")]) for i in range(30)]
    pred = [_utt(entities=[("time", "t0")]) if i % 2 else None for i in range(30)]
    m = slu_scores(gold, pred, n_resamples=300)
    for k in ("intent_accuracy", "span_f1", "slu_f1"):
        lo, hi = m[k].ci95
        assert lo <= m[k].value <= hi, k
