"""Optional cross-check against real PyTorch (not part of the test suite: torch is no
requirement of saltseg). In a separate virtual environment with torch and numpy:

    python3.11 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy
    PYTHONPATH=.:tests /tmp/torchvenv/bin/python tests/torch_crosscheck.py

checks that ``torch.load(weights_only=True)`` reads our fake-original writer's legacy (CUDA
and CPU) and zip files, that :func:`saltseg.data.weights_io.read_torch` reads what
``torch.save`` writes (zip and legacy format, a strided view into a shared storage), and
that the operators of tests/reference_nets.py (``ref``) match PyTorch's.
"""

from __future__ import annotations

import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import reference_nets as ref
import torch
import torch.nn.functional as tf
from original_fakes import phalanx_state, write_torch_legacy, write_torch_zip

from saltseg.data.weights_io import read_torch


def formats(tmp: Path) -> None:
    sd = phalanx_state(np.random.default_rng(5), "v3", 16, (1, 1, 1, 1))
    writers = {
        "legacy_cuda": lambda p: write_torch_legacy(p, sd),
        "legacy_cpu": lambda p: write_torch_legacy(p, sd, location="cpu"),
        "zip": lambda p: write_torch_zip(p, sd, location="cpu"),
    }
    for name, write in writers.items():
        write(tmp / f"{name}.pth")
        got = torch.load(tmp / f"{name}.pth", map_location="cpu", weights_only=True)
        assert list(got) == list(sd) and all(np.array_equal(got[k].numpy(), sd[k]) for k in sd)
        print(f"torch.load reads our {name} file")
    tensors = OrderedDict((k, torch.from_numpy(v)) for k, v in sd.items())
    tensors["view"] = tensors["resnet.fc.weight"][3:5, 1:4]
    for name, zip_format in (("zip", True), ("legacy", False)):
        path = tmp / f"torch_{name}.pth"
        torch.save(tensors, path, _use_new_zipfile_serialization=zip_format)
        got = read_torch(path)
        assert all(np.array_equal(got[k], v.numpy()) for k, v in tensors.items())
        print(f"read_torch reads torch.save's {name} file")
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    torch.save(module.state_dict(), tmp / "module.pth")  # _metadata, num_batches_tracked
    got = read_torch(tmp / "module.pth")
    assert got["1.num_batches_tracked"].shape == () and got["0.weight"].shape == (4, 3, 3, 3)
    print("read_torch reads a module's state_dict (with _metadata)")


def operators() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 8, 9, 9))
    t = torch.from_numpy(x)

    def check(what: str, ours: np.ndarray, theirs: torch.Tensor) -> None:
        err = float(np.abs(ours - theirs.numpy()).max())
        assert err < 1e-10, (what, err)
        print(f"{what}: max difference {err:.1e}")

    w, b = rng.normal(size=(6, 4, 3, 3)), rng.normal(size=6)
    tw, tb = torch.from_numpy(w), torch.from_numpy(b)
    check("grouped conv 3x3/2", ref.conv(x, w, b, 2, 1, 2), tf.conv2d(t, tw, tb, 2, 1, groups=2))
    w = rng.normal(size=(5, 8, 5, 5))
    check("conv 5x5/2", ref.conv(x, w, None, 2, 2), tf.conv2d(t, torch.from_numpy(w), None, 2, 2))
    w, b = rng.normal(size=(8, 5, 2, 2)), rng.normal(size=5)
    theirs = tf.conv_transpose2d(t, torch.from_numpy(w), torch.from_numpy(b), 2)
    check("transposed conv 2x2/2", ref.conv_transpose(x, w, b, 2), theirs)
    w = rng.normal(size=(8, 5, 4, 4))
    theirs = tf.conv_transpose2d(t, torch.from_numpy(w), None, 2, padding=1)
    check("transposed conv 4x4/2 cropped 1", ref.conv_transpose(x, w, None, 2, crop=1), theirs)
    for f in (2, 16):
        theirs = tf.interpolate(t, scale_factor=f, mode="bilinear", align_corners=True)
        check(f"bilinear x{f} align_corners", ref.up(x, f), theirs)
    g, beta, m, v = (rng.uniform(0.5, 1.5, 8) for _ in range(4))
    theirs = tf.batch_norm(t, *(torch.from_numpy(a) for a in (m, v, g, beta)), False, 0.1, 1e-5)
    check("batch norm (eval)", ref.bn(x, g, beta, m, v, 1e-5), theirs)
    check("max-pool 2", ref.maxpool2(x[:, :, :8, :8]), tf.max_pool2d(t[:, :, :8, :8], 2))


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        formats(Path(d))
    operators()
    print("ok")
