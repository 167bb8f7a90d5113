"""Tests for entity-level F1 and SQuAD EM/F1 against hand-computed values."""

from __future__ import annotations

import pytest

from mmojax import data


@pytest.mark.parametrize(
    ("tags", "entities"),
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
        (["B-LOC", "B-LOC", "I-LOC"], [("LOC", 0, 1), ("LOC", 1, 3)]),
        # Lenient IOB2: a dangling I- starts an entity; a type change splits.
        (["I-ORG", "I-ORG", "O", "I-ORG"], [("ORG", 0, 2), ("ORG", 3, 4)]),
        (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 3)]),
        (["O", "O"], []),
    ],
)
def test_extract_entities(tags, entities):
    assert data.extract_entities(tags) == entities


def test_entity_f1_type_error_counts_once_each_side():
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]]
    s = data.entity_f1(true, pred)
    assert (s.num_true, s.num_pred, s.num_correct) == (3, 3, 2)
    assert s.precision == pytest.approx(2 / 3)
    assert s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 / 3)


def test_entity_f1_span_mismatch_and_lenient_start():
    true = [["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC"]]
    pred = [["B-PER", "I-PER", "O", "O", "I-LOC", "I-LOC"]]
    s = data.entity_f1(true, pred)
    assert (s.num_true, s.num_pred, s.num_correct) == (2, 2, 1)
    assert (s.precision, s.recall, s.f1) == pytest.approx((0.5, 0.5, 0.5))


def test_entity_f1_precision_differs_from_recall():
    s = data.entity_f1([["B-PER", "O", "B-LOC", "O", "B-ORG"]], [["B-PER", "O", "O", "O", "O"]])
    assert (s.precision, s.recall, s.f1) == pytest.approx((1.0, 1 / 3, 0.5))


def test_entity_f1_edge_cases():
    assert data.entity_f1([["O"]], [["O"]]).f1 == 0.0
    assert data.entity_f1([["B-PER"]], [["O"]])[:3] == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        data.entity_f1([["O"]], [])
    with pytest.raises(ValueError):
        data.entity_f1([["O", "O"]], [["O"]])


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("  The  Quick, brown fox!! ", "quick brown fox"),
        ("An apple a day", "apple day"),
        ("Theatre", "theatre"),
        ("U.S.A.", "usa"),
    ],
)
def test_normalize_answer(text, normalized):
    assert data.normalize_answer(text) == normalized


def test_squad_scores_hand_computed():
    predictions = ["The Black Sea!", "ten countries in Europe", "Robert", "1807"]
    references = [
        ["the Black Sea", "Black Sea"],
        ["ten", "ten countries"],
        ["Robert Stevenson"],
        ["1810"],
    ]
    scores = data.squad_exact_match_and_f1(predictions, references)
    # EM: 1, 0, 0, 0. F1: 1, max(0.4, 2/3), 2/3, 0.
    assert scores["exact_match"] == pytest.approx(1 / 4)
    assert scores["f1"] == pytest.approx((1 + 2 / 3 + 2 / 3 + 0) / 4)


def test_squad_scores_by_id_missing_prediction_scores_zero():
    refs = {"a": ["Paris"], "b": ["blue whale"]}
    scores = data.squad_exact_match_and_f1({"a": "paris."}, refs)
    assert scores == pytest.approx({"exact_match": 0.5, "f1": 0.5})
    assert data.squad_exact_match_and_f1({"a": "the"}, {"a": ["an"]})["f1"] == 1.0


def test_squad_scores_validate_inputs():
    with pytest.raises(ValueError):
        data.squad_exact_match_and_f1(["x"], [["x"], ["y"]])
    with pytest.raises(ValueError):
        data.squad_exact_match_and_f1(["x"], [[]])
    with pytest.raises(ValueError):
        data.squad_exact_match_and_f1([], [])
