"""A typist's features (app/features/): the fold of simulated tests' stored rows, checked against sums recomputed
here from the per-test tables the ingest job writes (app/tables.py), and the fold's own guarantees — any order, each
test once, a lossless byte form, case folding, one id for characters outside the vocabulary."""

from __future__ import annotations

import math
import random
from collections import defaultdict

import numpy as np
import pytest

from app.features import UserFeatures, char_ids, test_deltas
from app.features.summary import fold
from app.features.vocab import CHARACTERS, VOCAB_SIZE
from app.schemas import parse_submission
from app.tables import TestTables, build_tables
from devstack.simulate import simulate_tests

USERS, TESTS = 3, 6


def tables_of(submissions: list[dict]) -> TestTables:
    tests = [parse_submission(s) for s in submissions]
    return build_tables(tests, np.zeros(len(tests)), np.arange(len(tests)))


@pytest.fixture(scope="module")
def submissions() -> list[dict]:
    return simulate_tests(USERS, TESTS, seed=17, first_user_id=500, traits=True)


@pytest.fixture(scope="module")
def tables(submissions) -> TestTables:
    return tables_of(submissions)


@pytest.fixture(scope="module")
def deltas(tables):
    return test_deltas(tables.keys, tables.pairs, tables.results)


def by_user(deltas) -> dict[int, list]:
    grouped = defaultdict(list)
    for delta in deltas:
        grouped[delta.user_id].append(delta)
    return grouped


def char_id(char: str) -> int:
    """A character's vocabulary id, recomputed here: its lower case's place in CHARACTERS, 0 outside it."""
    return CHARACTERS.index(char.lower()) + 1 if len(char) == 1 and char.lower() in CHARACTERS else 0


def name_id(name: str, pair: bool) -> int:
    return char_id(name[0]) * VOCAB_SIZE + char_id(name[1]) if pair else char_id(name)


def expected_sums(per_test, pair: bool, user_id: int) -> dict[int, list[int]]:
    """Per vocabulary id: presses, errors, timed presses and Σ round(1000 ln t), summed over the user's rows."""
    sums: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in per_test.to_pylist():
        if row["user_id"] != user_id:
            continue
        for i, name in enumerate(row["key"]):
            entry = sums[name_id(name, pair)]
            entry[0] += row["presses"][i]
            entry[1] += row["errors"][i]
            entry[2] += row["timed_presses"][i]
            entry[3] += sum(round(1000 * math.log(max(t, 1))) for t in row["time_to_type_ms"][i])
    return dict(sums)


def held(table: np.ndarray) -> dict[int, list[int]]:
    return {int(i): table[i].tolist() for i in np.flatnonzero(table.any(axis=1))}


def test_one_delta_per_test_with_its_result(deltas, tables):
    assert [(d.user_id, d.test_id) for d in deltas] == list(
        zip(tables.results.column("user_id").to_pylist(), tables.results.column("test_id").to_pylist())
    )
    assert [d.wpm for d in deltas] == tables.results.column("wpm").to_pylist()
    started = [int(t.timestamp() * 1000) for t in tables.results.column("started_at").to_pylist()]
    assert [d.started_ms for d in deltas] == started


def test_key_and_pair_sums_equal_the_per_test_tables(deltas, tables):
    for user_id, mine in by_user(deltas).items():
        features = fold(user_id, mine)
        assert features.tests == TESTS
        assert held(features.key) == expected_sums(tables.keys, pair=False, user_id=user_id)
        assert held(features.pair) == expected_sums(tables.pairs, pair=True, user_id=user_id)
        assert features.key[:, 0].sum() > 0 and features.key[:, 3].sum() > 0  # the sums are not vacuous


def test_log_sum_is_the_rounded_log_times_of_the_timed_presses(deltas, tables):
    user_id = deltas[0].user_id
    features = fold(user_id, by_user(deltas)[user_id])
    times = [
        t
        for row in tables.keys.to_pylist()
        if row["user_id"] == user_id
        for per_key in row["time_to_type_ms"]
        for t in per_key
    ]
    assert features.key[:, 2].sum() == len(times)
    assert features.key[:, 3].sum() == sum(round(1000 * math.log(t)) for t in times)


def test_the_fold_does_not_depend_on_the_order_of_the_tests(deltas):
    for user_id, mine in by_user(deltas).items():
        shuffled = mine[:]
        random.Random(user_id).shuffle(shuffled)
        assert shuffled != mine
        first, second = fold(user_id, mine), fold(user_id, shuffled)
        assert first.equals(second)
        assert np.array_equal(first.key, second.key) and np.array_equal(first.pair, second.pair)
        assert first.first_ms == min(d.started_ms for d in mine) and first.last_ms == max(d.started_ms for d in mine)


def test_adding_a_test_twice_counts_it_once(deltas):
    user_id = deltas[0].user_id
    mine = by_user(deltas)[user_id]
    features = fold(user_id, mine)
    before = features.to_dict()
    assert features.add(mine[2]) is False
    assert features.to_dict() == before and features.tests == TESTS


def test_the_byte_form_round_trips(deltas):
    user_id = deltas[0].user_id
    features = fold(user_id, by_user(deltas)[user_id])
    back = UserFeatures.from_bytes(features.to_bytes())
    assert back.equals(features)
    assert np.array_equal(back.key, features.key) and np.array_equal(back.pair, features.pair)
    assert back.recent == features.recent and len(back.recent) == TESTS
    assert UserFeatures.from_bytes(UserFeatures(user_id).to_bytes()).equals(UserFeatures(user_id))
    with pytest.raises(ValueError, match="not a UserFeatures record"):
        UserFeatures.from_bytes(features.to_bytes()[:-3] + b"\x01\x00\x00\x00x")


def test_a_slice_of_the_tables_gives_the_same_deltas(deltas, tables):
    # Batches reach the writer as slices of larger tables: their list offsets do not start at 0.
    part = test_deltas(tables.keys.slice(2, 5), tables.pairs.slice(2, 5), tables.results.slice(2, 5))
    for mine, whole in zip(part, deltas[2:7], strict=True):
        assert mine.test_id == whole.test_id
        assert np.array_equal(mine.key_ids, whole.key_ids) and np.array_equal(mine.key_stats, whole.key_stats)
        assert np.array_equal(mine.pair_ids, whole.pair_ids) and np.array_equal(mine.pair_stats, whole.pair_stats)


def typed(text: str, user_id: int = 900, test_id: str = "typed") -> dict:
    """A submission typing `text` without an error, one key every 150 ms (Shift before each capital)."""
    keystrokes, now = [], 0
    for char in text:
        if char.isupper():
            keystrokes.append({"key": "Shift", "down": now, "up": now + 200})
            now += 50
        keystrokes.append({"key": char, "down": now, "up": now + 80})
        now += 150
    return {
        "user_id": user_id,
        "test_id": test_id,
        "started_at": "2026-11-02T10:00:00.000Z",
        "text": text,
        "layout": "qwerty",
        "language": "en",
        "keystrokes": keystrokes,
    }


def test_upper_and_lower_case_share_an_id():
    assert char_ids("Tt").tolist() == [char_id("t")] * 2
    tables = tables_of([typed("Tt tT")])
    [delta] = test_deltas(tables.keys, tables.pairs, tables.results)
    features = fold(900, [delta])
    t, space = char_id("t"), char_id(" ")
    assert features.key[t, 0] == 4 and held(features.key).keys() == {t, space}
    assert features.pair[t * VOCAB_SIZE + t, 0] == 2  # "Tt" and "tT"
    assert features.pair[t * VOCAB_SIZE + space, 0] == 1 and features.pair[space * VOCAB_SIZE + t, 0] == 1


def test_characters_outside_the_vocabulary_share_id_0():
    assert char_ids("éжa").tolist() == [0, 0, char_id("a")]
    tables = tables_of([typed("aé жa")])
    [delta] = test_deltas(tables.keys, tables.pairs, tables.results)
    features = fold(900, [delta])
    a, space = char_id("a"), char_id(" ")
    assert features.key[0, 0] == 2 and features.key[a, 0] == 2 and features.key[space, 0] == 1
    assert features.pair[a * VOCAB_SIZE + 0, 0] == 1 and features.pair[0 * VOCAB_SIZE + a, 0] == 1
    assert features.pair[0 * VOCAB_SIZE + space, 0] == 1 and features.pair[space * VOCAB_SIZE + 0, 0] == 1


def test_a_test_of_another_typist_is_refused(deltas):
    features = UserFeatures(deltas[0].user_id + 1)
    with pytest.raises(ValueError, match=f"of user {deltas[0].user_id} folded into user"):
        features.add(deltas[0])
    assert features.tests == 0 and not features.key.any()
