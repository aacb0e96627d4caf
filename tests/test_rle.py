from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from saltseg.core import rle
from saltseg.data.tiles import read_mask


def test_known_examples() -> None:
    m = np.zeros((101, 101), bool)
    assert rle.encode(m) == ""
    m[0, 0] = True
    assert rle.encode(m) == "1 1"
    m[:] = False
    m[1, 0] = True  # second pixel in column-major order
    assert rle.encode(m) == "2 1"
    m[:] = False
    m[0, 1] = True  # first pixel of the second column
    assert rle.encode(m) == "102 1"
    m[:] = True
    assert rle.encode(m) == "1 10201"
    m[:, :50] = False
    assert rle.encode(m) == f"{50 * 101 + 1} {51 * 101}"


def test_decode_column_major() -> None:
    m = rle.decode("1 3 203 2", (101, 101))
    assert m[0:3, 0].all() and m.sum() == 5
    assert m[0, 2] and m[1, 2]


@pytest.mark.parametrize("empty", ["", "  ", None, float("nan")])
def test_decode_empty(empty) -> None:
    assert not rle.decode(empty).any()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("1", "odd number"),
        ("0 5", "below 1"),
        ("5 0", "length below 1"),
        ("10200 5", "beyond"),
        ("10 5 12 2", "ascending"),
        ("20 2 10 2", "ascending"),
        ("1 x", "non-integer"),
    ],
)
def test_decode_rejects_malformed(text: str, why: str) -> None:
    with pytest.raises(rle.RLEError, match=why):
        rle.decode(text)


@settings(max_examples=200, deadline=None)
@given(
    arrays(
        bool,
        st.tuples(st.integers(1, 40), st.integers(1, 40)),
        elements=st.booleans(),
    )
)
def test_round_trip_random_shapes(mask: np.ndarray) -> None:
    text = rle.encode(mask)
    np.testing.assert_array_equal(rle.decode(text, mask.shape), mask)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 50), st.integers(1, 50)), max_size=30))
def test_round_trip_from_runs(gaps_and_lengths: list[tuple[int, int]]) -> None:
    pos, pairs = 1, []
    for gap, length in gaps_and_lengths:
        start = pos + gap
        if start + length - 1 > 101 * 101:
            break
        pairs += [start, length]
        pos = start + length
    text = " ".join(map(str, pairs))
    assert rle.encode(rle.decode(text)) == text


def test_many() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((5, 101, 101)) > 0.7
    np.testing.assert_array_equal(rle.decode_many(rle.encode_many(masks)), masks)


@pytest.mark.realdata
@pytest.mark.slow
def test_real_train_csv_bit_exact(tgs_data) -> None:
    df = pd.read_csv(tgs_data / "train.csv", dtype=str, keep_default_na=False)
    assert len(df) > 0
    for tid, text in zip(df["id"], df["rle_mask"], strict=True):
        mask = read_mask(tgs_data / "train" / "masks" / f"{tid}.png")
        np.testing.assert_array_equal(rle.decode(text), mask, err_msg=tid)
        assert rle.encode(mask) == text.strip(), tid
