"""Readers of Keras 2 HDF5, PyTorch (legacy and zip) and safetensors weight files."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from original_fakes import (
    LEGACY_MAGIC,
    bes_layers,
    keras2_weights,
    phalanx_state,
    write_keras2_h5,
    write_torch_legacy,
    write_torch_zip,
)

from saltseg.core.errors import DataError
from saltseg.data.weights_io import (
    read_keras2_h5,
    read_keras2_layers,
    read_safetensors,
    read_torch,
    read_weights,
)


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return phalanx_state(np.random.default_rng(0), "v3", 16, (1, 1, 1, 1))


@pytest.mark.parametrize("writer", [write_torch_legacy, write_torch_zip])
def test_torch_state_dict_roundtrip(tmp_path: Path, state: dict, writer) -> None:
    path = tmp_path / "model.pth"
    writer(path, state)
    got = read_torch(path)
    assert list(got) == list(state)
    for k, v in state.items():
        assert got[k].dtype == v.dtype and np.array_equal(got[k], v), k
    # resnet.* and the encoder share a storage in the file: still separate, equal arrays
    assert np.array_equal(got["resnet.layer1.0.conv1.weight"], got["encode2.0.0.conv1.weight"])


def test_torch_legacy_is_cuda_tagged(tmp_path: Path, state: dict) -> None:
    path = tmp_path / "m.pth"
    write_torch_legacy(path, state)
    blob = path.read_bytes()
    assert b"torch.cuda\nFloatStorage" in blob and b"cuda:0" in blob
    assert pickle.loads(blob[: blob.index(b".") + 1]) == LEGACY_MAGIC


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _legacy_with(obj: object) -> bytes:
    head = [pickle.dumps(LEGACY_MAGIC, 2), pickle.dumps(1001, 2), pickle.dumps({}, 2)]
    return b"".join([*head, pickle.dumps(obj, 2), pickle.dumps([], 2)])


def test_torch_refuses_code(tmp_path: Path) -> None:
    evil = _Evil()
    evil.marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(_legacy_with({"w": evil}))
    with pytest.raises(DataError, match=r"evil.pth: refusing to load (posix|os|nt)\.system"):
        read_torch(path)
    assert not evil.marker.exists()
    path.write_bytes(_legacy_with({"w": np.zeros(2)}))  # numpy is no tensor either
    with pytest.raises(DataError, match="refusing to load numpy"):
        read_torch(path)


@pytest.mark.parametrize("writer", [write_torch_legacy, write_torch_zip])
def test_torch_truncated(tmp_path: Path, state: dict, writer) -> None:
    path = tmp_path / "t.pth"
    writer(path, state)
    blob = path.read_bytes()
    for cut in (len(blob) // 2, len(blob) - 10, 30):
        path.write_bytes(blob[:cut])
        with pytest.raises(DataError, match=r"t\.pth"):
            read_torch(path)


def test_torch_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_torch(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(pickle.dumps(123, 2) + struct.pack("<q", 0))
    with pytest.raises(DataError, match="magic number"):
        read_torch(bad)
    bad.write_bytes(_legacy_with({"a": 1}))
    with pytest.raises(DataError, match="key 'a' is a int"):
        read_torch(bad)


def test_keras2_split_layer_names(tmp_path: Path) -> None:
    layers = bes_layers(np.random.default_rng(1), 16, (1, 1, 1, 1), (32, 16, 8, 8, 8))
    path = tmp_path / "fold_0.hdf5"
    write_keras2_h5(path, layers, limit=1024)
    import h5py

    with h5py.File(path) as f:
        assert "layer_names" not in f.attrs and "layer_names3" in f.attrs
    by_layer = read_keras2_layers(path)
    assert list(by_layer) == [n for n, _ in layers]
    assert by_layer["data"] == {} and list(by_layer["bn_data"]) == [
        "bn_data/beta", "bn_data/moving_mean", "bn_data/moving_variance"
    ]  # fmt: skip
    ref = keras2_weights(layers)
    got = read_keras2_h5(path)
    assert list(got) == list(ref) and all(np.array_equal(got[k], ref[k]) for k in ref)


def test_keras2_nested_model_and_scoped_names(tmp_path: Path) -> None:
    a, b = np.ones((1, 1, 3, 4), np.float32), np.zeros(4, np.float32)
    path = tmp_path / "w.hdf5"
    layers = [("input_1", []), ("model_1", [("conv0/kernel:0", a), ("bn0/beta:0", b)])]
    write_keras2_h5(path, [*layers, ("prediction", [("prediction_1/kernel:0", a)])])
    got = read_keras2_h5(path)
    assert list(got) == ["conv0/kernel", "bn0/beta", "prediction/kernel"]


def test_keras2_errors(tmp_path: Path) -> None:
    layers = bes_layers(np.random.default_rng(1), 16, (1, 1, 1, 1), (32, 16, 8, 8, 8))
    path = tmp_path / "w.hdf5"
    write_keras2_h5(path, layers)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 3])
    with pytest.raises(DataError, match=r"w.hdf5: cannot read HDF5"):
        read_keras2_h5(path)
    import h5py

    with h5py.File(path, "w") as f:
        f.create_group("x")
    with pytest.raises(DataError, match="no 'layer_names'"):
        read_keras2_h5(path)
    write_keras2_h5(path, [("conv0", [("conv0/kernel:0", np.zeros(2))])])
    with h5py.File(path, "a") as f:
        del f["conv0/conv0/kernel:0"]
    with pytest.raises(DataError, match=r"w\.hdf5: cannot read weight 'conv0/kernel:0'"):
        read_keras2_h5(path)


def test_safetensors_and_dispatch(tmp_path: Path, state: dict) -> None:
    from safetensors.numpy import save_file

    path = tmp_path / "r34.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(path))
    got = read_weights(path)
    assert set(got) == set(state) and np.array_equal(got["logit.0.weight"], state["logit.0.weight"])
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=r"r34\.safetensors"):
        read_safetensors(path)
    other = tmp_path / "w.npz"
    other.write_bytes(b"x")
    with pytest.raises(DataError, match="unknown weights format"):
        read_weights(other)
