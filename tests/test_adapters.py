"""Input adapters: shapes, channels, borders and exact inverses."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from saltseg.data.adapters import ADAPTERS, get_adapter

N = 12


def _blob_masks(rng: np.random.Generator, n: int = N) -> np.ndarray:
    masks = np.zeros((n, 101, 101), dtype=bool)
    for i in range(n):
        canvas = np.zeros((101, 101), np.uint8)
        for _ in range(3):
            centre = (int(rng.integers(0, 101)), int(rng.integers(0, 101)))
            cv2.circle(canvas, centre, int(rng.integers(2, 40)), 1, -1)
        masks[i] = canvas > 0
    masks[0] = False
    masks[1] = True
    masks[2] = rng.random((101, 101)) > 0.5  # salt-and-pepper: the hardest case
    masks[3, :, :50] = True  # a straight vertical edge
    return masks


@pytest.fixture(scope="module")
def tiles() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (N, 101, 101), dtype=np.uint8)
    return images, _blob_masks(rng)


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_forward_shapes_and_dtypes(name: str, tiles: tuple[np.ndarray, np.ndarray]) -> None:
    adapter = get_adapter(name)
    images, masks = tiles
    x = adapter.forward_images(images)
    y = adapter.forward_masks(masks)
    s = adapter.size
    assert x.shape == (N, s, s, 3) and x.dtype == np.float32
    assert y.shape == (N, s, s, 1) and y.dtype == np.float32
    assert set(np.unique(y)) <= {0.0, 1.0}


def test_bes_channels_and_reflect_border(tiles: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = tiles
    x = get_adapter("bes-224").forward_images(images)
    assert x.min() >= 0 and x.max() <= 255 and x.max() > 200
    np.testing.assert_array_equal(x[..., 0], x[..., 1])
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
    # reflect-101 around the first inner row/column (index 16): 16 - k mirrors 16 + k
    for k in (1, 5, 16):
        np.testing.assert_array_equal(x[:, 16 - k], x[:, 16 + k])
        np.testing.assert_array_equal(x[:, :, 16 - k], x[:, :, 16 + k])
    inner = cv2.resize(images[0].astype(np.float32), (192, 192), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(x[0, 16:208, 16:208, 0], inner, atol=5e-3)


@pytest.mark.parametrize(
    ("name", "before", "inner"), [("phalanx-256", 27, 202), ("phalanx-128", 13, 101)]
)
def test_phalanx_ramp_channels_and_edge_border(
    name: str, before: int, inner: int, tiles: tuple[np.ndarray, np.ndarray]
) -> None:
    adapter = get_adapter(name)
    images, _ = tiles
    x = adapter.forward_images(images)
    s = adapter.size
    ramp = np.linspace(0, 1, s, dtype=np.float32)
    np.testing.assert_allclose(x[0, :, 7, 1], ramp, atol=1e-7)
    np.testing.assert_allclose(x[..., 2], x[..., 0] * x[..., 1], atol=1e-6)
    assert x[..., 0].min() >= 0.0 and x[..., 0].max() <= 1.0
    # edge padding replicates the first/last inner rows and columns
    for row in range(before):
        np.testing.assert_array_equal(x[:, row, :, 0], x[:, before, :, 0])
    last = before + inner - 1
    np.testing.assert_array_equal(x[:, s - 1, :, 0], x[:, last, :, 0])
    np.testing.assert_array_equal(x[:, :, 0, 0], x[:, :, before, 0])


def test_pad_only_adapter_is_an_exact_inverse(tiles: tuple[np.ndarray, np.ndarray]) -> None:
    adapter = get_adapter("phalanx-128")
    images, masks = tiles
    back = adapter.inverse(adapter.forward_masks(masks))
    np.testing.assert_array_equal(back, masks.astype(np.float32))
    img_back = adapter.inverse(adapter.forward_images(images)[..., 0])
    np.testing.assert_array_equal(np.rint(img_back * 255).astype(np.uint8), images)


@pytest.mark.parametrize("name", ["bes-224", "phalanx-256"])
def test_resize_adapters_invert_masks(name: str, tiles: tuple[np.ndarray, np.ndarray]) -> None:
    adapter = get_adapter(name)
    _, masks = tiles
    back = adapter.inverse(adapter.forward_masks(masks)) > 0.5
    wrong = back != masks
    # smooth masks: at most a few boundary pixels; noise: a tiny share
    assert wrong[[0, 1, 3]].sum() == 0
    assert wrong[4:].sum(axis=(1, 2)).max() <= 3
    assert wrong[2].mean() <= 0.01


@pytest.mark.parametrize("name", ["bes-224", "phalanx-256"])
def test_resize_adapters_invert_network_space_masks(name: str) -> None:
    """A mask drawn at network resolution survives inverse -> forward up to the boundary."""
    adapter = get_adapter(name)
    rng = np.random.default_rng(5)
    masks = _blob_masks(rng)[4:]
    net = adapter.forward_masks(masks)
    again = adapter.forward_masks(adapter.inverse(net) > 0.5)
    lo, hi = adapter.pad_before, adapter.pad_before + adapter.inner
    assert (again[:, lo:hi, lo:hi] != net[:, lo:hi, lo:hi]).mean() < 0.002


def test_images_round_trip_through_resize(tiles: tuple[np.ndarray, np.ndarray]) -> None:
    smooth = cv2.GaussianBlur(tiles[0].transpose(1, 2, 0), (0, 0), 4).transpose(2, 0, 1)
    for name, scale in (("bes-224", 1.0), ("phalanx-256", 255.0)):
        adapter = get_adapter(name)
        back = adapter.inverse(adapter.forward_images(smooth)[..., 0]) * scale
        assert np.abs(back - smooth).mean() < 1.0


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_inverse_accepts_channel_axis(name: str) -> None:
    adapter = get_adapter(name)
    prob = np.random.default_rng(0).random((3, adapter.size, adapter.size), dtype=np.float32)
    a = adapter.inverse(prob)
    b = adapter.inverse(prob[..., None])
    assert a.shape == (3, 101, 101) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


def test_bad_shapes_are_rejected() -> None:
    adapter = get_adapter("bes-224")
    with pytest.raises(ValueError, match="101"):
        adapter.forward_images(np.zeros((2, 100, 101), np.uint8))
    with pytest.raises(ValueError, match="224"):
        adapter.inverse(np.zeros((2, 256, 256), np.float32))
    with pytest.raises(ValueError, match="unknown adapter"):
        get_adapter("nope")


def test_large_stacks_round_trip() -> None:
    """More tiles than OpenCV resizes in one call (128 channels in OpenCV 5)."""
    import numpy as np

    from saltseg.data.adapters import get_adapter

    rng = np.random.default_rng(0)
    masks = np.zeros((300, 101, 101), bool)
    masks[:, 20:80, 30:70] = True
    masks[::3] = False
    images = rng.integers(0, 256, (300, 101, 101), dtype=np.uint8)
    for name in ("bes-224", "phalanx-256", "phalanx-128"):
        ad = get_adapter(name)
        assert ad.forward_images(images).shape == (300, ad.size, ad.size, 3)
        back = ad.inverse(ad.forward_masks(masks)[..., 0]) > 0.5
        np.testing.assert_array_equal(back, masks)
