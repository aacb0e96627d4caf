"""SEG-Y sections and volumes: geometry, amplitude mapping, tiling, stitching, resume, outputs.

The stand-in model maps each pixel to a fixed function of its grey value, so the stitched
probability volume must equal that function of the grey volume exactly (edges included).
The trained-model test is in tests/test_segy_model.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import segyio

from saltseg.cli.main import main
from saltseg.core.errors import ConfigError, DataError
from saltseg.data.segy import SegyOptions, open_geometry, write_volume
from saltseg.infer.segy_volume import (
    AMPLITUDE_JSON,
    MASK_NAME,
    PARTIAL,
    PROB_NAME,
    VolumeOptions,
    predict_volume,
)
from saltseg.infer.tiling import blend_window, origins, predict_section

ROOT = Path(__file__).resolve().parents[1]


def known(tiles: np.ndarray) -> np.ndarray:
    """The stand-in model: a fixed, non-linear function of each pixel's grey value."""
    x = tiles.astype(np.float32) / 255.0
    return x * x * (3.0 - 2.0 * x)


def _volume(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 500.0).astype(np.float32)


# --------------------------------------------------------------------------- tiling


def test_windows_cover_every_pixel_and_end_at_the_edge() -> None:
    for length in (101, 102, 150, 151, 333):
        for stride in (1, 37, 50, 101):
            starts = origins(length, stride)
            covered = np.zeros(length, bool)
            for s in starts:
                covered[s : s + 101] = True
            assert covered.all() and starts[0] == 0 and starts[-1] == length - 101
    w = blend_window()
    assert w.min() > 0 and w[50, 50] == w.max() and np.allclose(w, w.T)


@pytest.mark.parametrize("shape", [(101, 101), (157, 230), (60, 40), (400, 102), (30, 300)])
@pytest.mark.parametrize("stride", [50, 37, 101])
def test_stitching_equals_the_known_function_everywhere(shape, stride) -> None:
    grey = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    prob = predict_section(grey, known, stride=stride, batch=7)
    assert prob.shape == shape
    np.testing.assert_allclose(prob, known(grey), rtol=0, atol=2e-6)


def test_scale_resamples_and_returns_to_the_section_size() -> None:
    grey = np.tile(np.linspace(0, 255, 120).astype(np.uint8)[:, None], (1, 200))
    prob = predict_section(grey, known, scale=(0.5, 2.0))
    assert prob.shape == grey.shape
    np.testing.assert_allclose(prob, known(grey), atol=0.02)


# --------------------------------------------------------------------------- volumes


def _grey_volume(volume: np.ndarray, out: Path) -> np.ndarray:
    clip = json.loads((out / AMPLITUDE_JSON).read_text())["clip"]
    a, b = clip
    return np.clip(np.rint((volume - a) * (255.0 / (b - a))), 0, 255).astype(np.uint8)


def _assert_same_layout(src: Path, dst: Path, options: SegyOptions) -> None:
    """Same geometry, text header, binary header (but the format) and every trace header."""
    e = open_geometry(src, options).probe.endian
    with (
        segyio.open(src, iline=options.iline_byte, xline=options.xline_byte, endian=e) as a,
        segyio.open(dst, iline=options.iline_byte, xline=options.xline_byte, endian=e) as b,
    ):
        assert list(a.ilines) == list(b.ilines) and list(a.xlines) == list(b.xlines)
        assert a.sorting == b.sorting and list(a.samples) == list(b.samples)
        assert a.text[0] == b.text[0]
        bin_a, bin_b = dict(a.bin), dict(b.bin)
        assert bin_b.pop(segyio.BinField.Format) == 5
        bin_a.pop(segyio.BinField.Format)
        assert bin_a == bin_b
        assert all(dict(a.header[t]) == dict(b.header[t]) for t in range(a.tracecount))


@pytest.mark.parametrize(
    ("sorting", "endian", "direction"),
    [("inline", "big", "both"), ("crossline", "little", "both"), ("inline", "big", "crossline")],
)
def test_volume_outputs_equal_the_known_function(tmp_path, sorting, endian, direction) -> None:
    """Output probabilities equal the function of the grey volume, in file layout, headers
    copied; little-endian input is detected; the mask is the thresholded probability."""
    vol = _volume((23, 130, 117))
    src = write_volume(
        tmp_path / "in.sgy", vol, ilines=np.arange(100, 123), sorting=sorting, endian=endian
    )
    g = open_geometry(src)
    assert g.probe.endian == endian and g.sorting == sorting and g.shape == vol.shape
    out = tmp_path / "out"
    dirs = ("inline", "crossline") if direction == "both" else (direction,)
    res = predict_volume(g, known, out, VolumeOptions(directions=dirs), progress=False)
    expected = known(_grey_volume(vol, out))
    with segyio.open(res.probability, endian=endian) as f:
        got = segyio.tools.cube(f)
    with segyio.open(res.mask, endian=endian) as f:
        mask = segyio.tools.cube(f)
    if sorting == "crossline":  # segyio's cube is (crosslines, inlines, samples) then
        got, mask = got.transpose(1, 0, 2), mask.transpose(1, 0, 2)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    np.testing.assert_array_equal(mask, (got > 0.5).astype(np.float32))
    _assert_same_layout(src, res.probability, SegyOptions())
    _assert_same_layout(src, res.mask, SegyOptions())
    assert not (out / PARTIAL).exists()
    amp = json.loads((out / AMPLITUDE_JSON).read_text())
    assert amp["percentiles"] == [0.5, 99.5] and amp["mode"] == "symmetric"


class KilledError(Exception):
    """Stands for the process being killed."""


def _counting(tiles_seen: list[int], die_at_call: int | None = None):
    """The known function, counting the tiles it sees; raises at call ``die_at_call``."""

    def predictor(tiles: np.ndarray) -> np.ndarray:
        if len(tiles_seen) == die_at_call:
            raise KilledError
        tiles_seen.append(len(tiles))
        return known(tiles)

    return predictor


def test_killed_run_resumes_after_the_last_finished_line(tmp_path) -> None:
    """12 inlines of 4 tiles, 120 crosslines of 2 (padded to a tile's width); 4 tiles per
    call, so one inline or two crosslines per group."""
    vol = _volume((12, 120, 110), seed=3)
    g = open_geometry(write_volume(tmp_path / "in.sgy", vol))
    out = tmp_path / "out"
    options = VolumeOptions(directions=("inline", "crossline"), batch=4)
    seen: list[int] = []
    with pytest.raises(KilledError):
        predict_volume(g, _counting(seen, 15), out, options, model={"v": 1}, progress=False)
    assert not (out / PROB_NAME).exists() and not (out / MASK_NAME).exists()
    state = json.loads((out / PARTIAL / "state.json").read_text())
    assert state["done"] == {"inline": 12, "crossline": 6}
    seen.clear()
    res = predict_volume(g, _counting(seen), out, options, model={"v": 1}, progress=False)
    assert res.resumed_lines == 18 and sum(seen) == (120 - 6) * 2
    with segyio.open(res.probability) as f:
        np.testing.assert_allclose(segyio.tools.cube(f), known(_grey_volume(vol, out)), atol=2e-6)
    assert not (out / PARTIAL).exists()


def test_a_changed_model_starts_afresh(tmp_path) -> None:
    g = open_geometry(write_volume(tmp_path / "in.sgy", _volume((4, 101, 101))))
    out = tmp_path / "out"
    seen: list[int] = []
    with pytest.raises(KilledError):
        predict_volume(
            g, _counting(seen, 2), out, VolumeOptions(batch=1), model={"v": 1}, progress=False
        )
    seen.clear()
    res = predict_volume(
        g, _counting(seen), out, VolumeOptions(batch=1), model={"v": 2}, progress=False
    )
    assert res.resumed_lines == 0 and sum(seen) == 4


# --------------------------------------------------------------------------- bad inputs


def _write_traces(path: Path, headers: list[dict[int, int]], ns: int = 50) -> Path:
    """An unstructured file with the given trace-header values."""
    spec = segyio.spec()
    spec.samples, spec.format, spec.tracecount = np.arange(ns) * 4.0, 5, len(headers)
    rng = np.random.default_rng(0)
    with segyio.create(str(path), spec) as f:
        f.bin.update(hdt=4000, hns=ns)
        for t, h in enumerate(headers):
            f.header[t] = h
            f.trace[t] = rng.standard_normal(ns).astype(np.float32)
    return path


def _two_d_line(path: Path, n: int = 150) -> Path:
    return _write_traces(path, [{21: 1000 + t} for t in range(n)], ns=120)


def test_bad_inputs_raise_errors_that_say_what_to_do(tmp_path) -> None:
    empty = tmp_path / "empty.sgy"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        open_geometry(empty)
    good = write_volume(tmp_path / "good.sgy", _volume((5, 6, 40)))
    cut = tmp_path / "cut.sgy"
    cut.write_bytes(good.read_bytes()[:-77])
    with pytest.raises(DataError, match=r"truncated.*copy it again"):
        open_geometry(cut)
    junk = tmp_path / "junk.sgy"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 9000, np.uint8).tobytes())
    with pytest.raises(DataError, match="not a SEG-Y file"):
        open_geometry(junk)
    odd = write_volume(tmp_path / "odd.sgy", _volume((5, 6, 40)), iline_byte=17, xline_byte=13)
    with pytest.raises(DataError, match="--iline-byte 17 --xline-byte 13"):
        open_geometry(odd)
    with pytest.raises(ConfigError, match=r"not the first byte.*189 .INLINE_3D"):
        open_geometry(odd, SegyOptions(iline_byte=190))
    g = open_geometry(odd, SegyOptions(iline_byte=17, xline_byte=13))
    assert g.shape == (5, 6, 40)
    with pytest.raises(DataError, match=r"single line of 30 traces.*--iline-byte 189"):
        open_geometry(good, SegyOptions(iline_byte=9, xline_byte=21))  # 9 is 0, 21 the CDP
    rng = np.random.default_rng(0)
    mess = [{189: int(a), 193: int(b), 21: int(c)} for a, b, c in rng.integers(1, 4, (30, 3))]
    unstructured = _write_traces(tmp_path / "mess.sgy", mess)
    with pytest.raises(DataError, match=r"unstructured.*--iline-byte.*--2d"):
        open_geometry(unstructured)
    line = _two_d_line(tmp_path / "line.sgy")
    with pytest.raises(DataError, match=r"2D line.*--2d"):
        open_geometry(line)
    g2 = open_geometry(line, SegyOptions(two_d=True))
    assert g2.kind == "2d" and g2.shape == (1, 150, 120) and g2.xlines[0] == 1000
    with pytest.raises(ConfigError, match="2D line has one direction"):
        predict_volume(g2, known, tmp_path / "o", VolumeOptions(directions=("crossline",)))


def test_a_2d_line_is_predicted_as_one_section(tmp_path) -> None:
    line = _two_d_line(tmp_path / "line.sgy")
    g = open_geometry(line, SegyOptions(two_d=True))
    res = predict_volume(g, known, tmp_path / "out", VolumeOptions(), progress=False)
    with segyio.open(line, ignore_geometry=True) as a:
        src = a.trace.raw[:]
    with segyio.open(res.probability, ignore_geometry=True) as b:
        got = b.trace.raw[:]
        assert [b.header[t][21] for t in range(150)] == list(range(1000, 1150))
    np.testing.assert_allclose(got, known(_grey_volume(src, tmp_path / "out")), atol=2e-6)


def test_cli_info_on_a_volume_a_line_and_a_bad_file(tmp_path, capsys) -> None:
    vol = write_volume(tmp_path / "v.sgy", _volume((7, 9, 30)), endian="little")
    assert main(["segy", "info", str(vol)]) == 0
    out = capsys.readouterr().out
    for text in (
        "kind: 3D volume",
        "inlines: 7 (1..7 step 1)",
        "crosslines: 9",
        "little",
        "sample_interval_us: 4000",
        "format: 5 (4-byte IEEE float)",
        "rms",
    ):
        assert text in out
    line = _two_d_line(tmp_path / "line.sgy")
    assert main(["segy", "info", str(line)]) == 0
    out = capsys.readouterr().out
    assert "structured: False" in out and "--2d" in out
    assert main(["segy", "info", str(line), "--2d", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "2D line" and info["crosslines"].startswith("150 (1000..1149")
    cut = tmp_path / "cut.sgy"
    cut.write_bytes(vol.read_bytes()[:5000])
    assert main(["segy", "info", str(cut)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "truncated" in err


@pytest.mark.parametrize("bad", ["empty", "truncated", "bytes", "unstructured", "line"])
def test_cli_predict_refuses_bad_inputs_and_writes_nothing(tmp_path, capsys, bad) -> None:
    path = tmp_path / f"{bad}.sgy"
    if bad == "empty":
        path.write_bytes(b"")
    elif bad == "truncated":
        whole = write_volume(tmp_path / "whole.sgy", _volume((4, 5, 30)))
        path.write_bytes(whole.read_bytes()[:-1])
    elif bad == "bytes":
        write_volume(path, _volume((4, 5, 30)), iline_byte=73, xline_byte=77)
    elif bad == "unstructured":
        _write_traces(path, [{189: 1, 193: 1} for _ in range(20)])
    else:
        _two_d_line(path)
    out = tmp_path / "out"
    code = main(
        [
            "segy",
            "predict",
            str(path),
            "--out",
            str(out),
            "--family",
            "phalanx",
            "--stage",
            "stage1",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (out / PROB_NAME).exists() and not (out / MASK_NAME).exists()


def test_cli_predict_names_the_missing_training(tmp_path, capsys) -> None:
    src = write_volume(tmp_path / "v.sgy", _volume((4, 5, 30)))
    (tmp_path / "SETTINGS.json").write_text(json.dumps({"PROFILE": "cpu"}))
    out = tmp_path / "out"
    args = ["--settings", str(tmp_path / "SETTINGS.json"), "segy", "predict", str(src)]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "phase not finished" in err and "--family phalanx --stage stage1" in err
    assert not out.exists()


# --------------------------------------------------------------------------- memory


MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    from saltseg.data.segy import open_geometry
    from saltseg.infer.segy_volume import VolumeOptions, predict_volume

    def status(key):  # VmHWM: this image's peak (ru_maxrss would keep the forking parent's)
        line = next(x for x in Path("/proc/self/status").read_text().splitlines()
                    if x.startswith(key))
        return int(line.split()[1]) / 1024

    def known(tiles):
        x = tiles.astype(np.float32) / 255.0
        return x * x * (3.0 - 2.0 * x)

    g = open_geometry(sys.argv[1])
    base = status("VmRSS")
    options = VolumeOptions(directions=("inline", "crossline"), batch=32, mmap=False)
    predict_volume(g, known, Path(sys.argv[2]), options, progress=False)
    print(json.dumps({"base_mb": base, "peak_mb": status("VmHWM")}))
    """
)
GROWTH_MB = 40
"""Bound on the peak RSS above the imports' for a whole run (measured about 22 MB)."""


@pytest.mark.slow
def test_peak_memory_stays_bounded_on_a_larger_volume(tmp_path) -> None:
    """A whole run (both directions, both outputs) on a 157 MB volume, about four times the
    bound, stays within ``GROWTH_MB`` above the RSS after the imports (about 55 MB: numpy,
    segyio, OpenCV). What grows with the options: the trace sample of the clip values (about
    17 MB transient, the peak here) and a group of ``batch`` tiles with their probabilities
    (32 here: a few MB; about 70 MB at the default 256 with the stand-in's temporaries).
    Read without a memory map: mapped pages of the input count in the RSS (the kernel can
    drop them, so a memory-mapped run also works on a volume larger than RAM)."""
    rng = np.random.default_rng(0)
    line = (rng.standard_normal((250, 600)) * 300).astype(np.float32)
    src = write_volume(tmp_path / "big.sgy", np.broadcast_to(line, (250, 250, 600)))
    size_mb = src.stat().st_size / 2**20
    script = tmp_path / "run.py"
    script.write_text(MEMORY_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(script), str(src), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    mem = json.loads(proc.stdout.strip().splitlines()[-1])
    growth = mem["peak_mb"] - mem["base_mb"]
    print(
        f"peak RSS {mem['peak_mb']:.0f} MB, {growth:.0f} MB above the imports, on a "
        f"{size_mb:.0f} MB volume"
    )
    assert size_mb > 3.5 * GROWTH_MB
    assert growth < GROWTH_MB, (mem, size_mb)
    assert (tmp_path / "out" / PROB_NAME).stat().st_size == src.stat().st_size
