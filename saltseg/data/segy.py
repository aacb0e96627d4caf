"""SEG-Y files: geometry, line-by-line reading, amplitude mapping and a header-preserving writer.

Files from outside are untrusted, so every problem that can be seen from the headers and the
file size (empty, truncated, unknown byte order or sample format, inline/crossline numbers
that do not form a grid, prestack gathers) is a :class:`DataError` naming the file and what
to do. Samples are read with segyio (memory-mapped where possible), one line at a time.

Outputs are written by :class:`SegyWriter`: the input's text, extended text and binary
headers and every trace header are copied byte for byte (the binary header's sample format
becomes 5, IEEE float32), in the input's byte order, so an output overlays its input in any
SEG-Y viewer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import segyio

from saltseg.core.errors import ConfigError, DataError

TEXT_BYTES = 3200
BIN_BYTES = 400
HEADER_BYTES = TEXT_BYTES + BIN_BYTES
TRACE_HEADER_BYTES = 240
IEEE_FLOAT = 5

FORMATS: dict[int, tuple[str, int]] = {
    1: ("4-byte IBM float", 4),
    2: ("4-byte signed integer", 4),
    3: ("2-byte signed integer", 2),
    5: ("4-byte IEEE float", 4),
    6: ("8-byte IEEE float", 8),
    8: ("1-byte signed integer", 1),
    10: ("4-byte unsigned integer", 4),
    11: ("2-byte unsigned integer", 2),
    16: ("1-byte unsigned integer", 1),
}
"""SEG-Y sample format codes segyio reads: name and bytes per sample."""

# Binary-header byte offsets (0-based from the file start) and trace-header offsets.
_BIN_INTERVAL, _BIN_SAMPLES, _BIN_FORMAT, _BIN_EXT = 3216, 3220, 3224, 3504
_TR_SAMPLES = 114

CDP_BYTE = 21
GRID_CANDIDATES: tuple[tuple[int, int], ...] = (
    (189, 193),
    (9, 21),
    (5, 21),
    (9, 13),
    (17, 13),
    (197, 201),
    (181, 185),
    (73, 77),
)
"""(inline, crossline) byte pairs tried when the given ones do not form a grid."""

Direction = Literal["inline", "crossline"]
Endian = Literal["big", "little"]


@dataclass(frozen=True)
class SegyOptions:
    """How to read a file's geometry: header bytes, byte order (None: detect), 2D line."""

    iline_byte: int = 189
    xline_byte: int = 193
    endian: Endian | None = None
    two_d: bool = False


@dataclass(frozen=True)
class Probe:
    """What the text and binary headers and the file size say (no geometry yet)."""

    path: Path
    size: int
    endian: Endian
    format_code: int
    n_samples: int
    sample_interval_us: float
    ext_headers: int
    n_traces: int

    @property
    def sample_bytes(self) -> int:
        return FORMATS[self.format_code][1]

    @property
    def trace_bytes(self) -> int:
        return TRACE_HEADER_BYTES + self.n_samples * self.sample_bytes

    @property
    def data_offset(self) -> int:
        return HEADER_BYTES + self.ext_headers * TEXT_BYTES


@dataclass(frozen=True)
class Geometry:
    """A file's traces as lines: a 3D grid (inline x crossline, in file order) or a 2D line.

    A 2D line (``kind == "2d"``) has one inline; its crosslines are the trace numbers (the
    CDP numbers when the file has them).
    """

    probe: Probe
    kind: Literal["3d", "2d"]
    ilines: np.ndarray
    xlines: np.ndarray
    sorting: Direction
    iline_byte: int
    xline_byte: int
    notes: tuple[str, ...] = field(default=())

    @property
    def path(self) -> Path:
        return self.probe.path

    @property
    def shape(self) -> tuple[int, int, int]:
        """(inlines, crosslines, samples)."""
        return len(self.ilines), len(self.xlines), self.probe.n_samples

    def n_lines(self, direction: Direction) -> int:
        return len(self.ilines) if direction == "inline" else len(self.xlines)

    def line_numbers(self, direction: Direction) -> np.ndarray:
        return self.ilines if direction == "inline" else self.xlines

    def line_traces(self, direction: Direction, k: int) -> np.ndarray:
        """File trace indices of line ``k`` (0-based position) of ``direction``, in order."""
        n_il, n_xl, _ = self.shape
        if direction == "inline":
            j = np.arange(n_xl)
            return k * n_xl + j if self.sorting == "inline" else j * n_il + k
        i = np.arange(n_il)
        return i * n_xl + k if self.sorting == "inline" else k * n_il + i

    def signature(self) -> dict[str, Any]:
        """What identifies the input for a resumed run."""
        st = self.path.stat()
        return {
            "path": str(self.path.resolve()),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "shape": list(self.shape),
            "kind": self.kind,
            "sorting": self.sorting,
            "iline_byte": self.iline_byte,
            "xline_byte": self.xline_byte,
            "endian": self.probe.endian,
        }


# --------------------------------------------------------------------------- probing


def _u16(raw: bytes, offset: int, endian: Endian) -> int:
    return int.from_bytes(raw[offset : offset + 2], endian)


def _i16(raw: bytes, offset: int, endian: Endian) -> int:
    return int.from_bytes(raw[offset : offset + 2], endian, signed=True)


def _detect_endian(path: Path, raw: bytes, endian: Endian | None) -> Endian:
    if endian is not None:
        code = _u16(raw, _BIN_FORMAT, endian)
        if code not in FORMATS:
            raise DataError(
                f"{path}: read as {endian}-endian, the binary header's sample format code is "
                f"{code}, not one of {sorted(FORMATS)}; check --endian (or leave it out to "
                "detect the byte order)"
            )
        return endian
    big, little = _u16(raw, _BIN_FORMAT, "big"), _u16(raw, _BIN_FORMAT, "little")
    if big in FORMATS:
        return "big"
    if little in FORMATS:
        return "little"
    raise DataError(
        f"{path}: not a SEG-Y file segyio can read: the binary header's sample format code "
        f"(bytes 3225-3226) is {big} big-endian / {little} little-endian, none of "
        f"{sorted(FORMATS)}; check that this is a SEG-Y file (not SU or a raw array)"
    )


def probe(path: str | os.PathLike[str], endian: Endian | None = None) -> Probe:
    """Read the headers and check the size against them (empty, truncated, not SEG-Y)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: SEG-Y file not found")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); copy it again from its source")
    if size < HEADER_BYTES:
        raise DataError(
            f"{path}: only {size} bytes, less than the {HEADER_BYTES} of the text and binary "
            "headers: the file is truncated or not SEG-Y; copy it again from its source"
        )
    with open(path, "rb") as fh:
        raw = fh.read(HEADER_BYTES)
    end = _detect_endian(path, raw, endian)
    code = _u16(raw, _BIN_FORMAT, end)
    ext = _i16(raw, _BIN_EXT, end)
    if ext < 0:
        raise DataError(
            f"{path}: a variable number of extended text headers ({ext}) is not supported; "
            "rewrite the file with a fixed number (e.g. with segyio or Seismic Unix)"
        )
    data_offset = HEADER_BYTES + ext * TEXT_BYTES
    ns = _u16(raw, _BIN_SAMPLES, end)
    if ns == 0 and size >= data_offset + TRACE_HEADER_BYTES:
        with open(path, "rb") as fh:
            fh.seek(data_offset)
            ns = _u16(fh.read(TRACE_HEADER_BYTES), _TR_SAMPLES, end)
    if ns == 0:
        raise DataError(
            f"{path}: the binary header and the first trace header give 0 samples per trace; "
            "the file is damaged or has no traces"
        )
    trace_bytes = TRACE_HEADER_BYTES + ns * FORMATS[code][1]
    data = size - data_offset
    if data <= 0:
        raise DataError(f"{path}: headers only, no traces ({size} bytes)")
    if data % trace_bytes:
        whole = data // trace_bytes
        raise DataError(
            f"{path}: truncated or damaged: after the headers, {data} bytes are "
            f"{data / trace_bytes:.2f} traces of {trace_bytes} bytes ({ns} samples, "
            f"{FORMATS[code][0]}); a complete file would have {data_offset + whole * trace_bytes}"
            f" or {data_offset + (whole + 1) * trace_bytes} bytes: copy it again from its source"
        )
    return Probe(
        path=path,
        size=size,
        endian=end,
        format_code=code,
        n_samples=ns,
        sample_interval_us=float(_u16(raw, _BIN_INTERVAL, end)),
        ext_headers=ext,
        n_traces=data // trace_bytes,
    )


# --------------------------------------------------------------------------- geometry


def _open_unstructured(p: Probe) -> segyio.SegyFile:
    try:
        return segyio.open(p.path, "r", ignore_geometry=True, endian=p.endian)
    except (RuntimeError, OSError) as exc:
        raise DataError(f"{p.path}: segyio cannot read it: {exc}") from None


def header_fields() -> dict[int, str]:
    """segyio's trace-header fields: first byte (1-based) -> name."""
    names = (n for n in dir(segyio.TraceField) if not n.startswith("_"))
    fields = {getattr(segyio.TraceField, n): n for n in names}
    return {int(b): n for b, n in fields.items() if isinstance(b, int)}


def check_header_byte(byte: int, what: str) -> None:
    """A ConfigError unless ``byte`` starts a trace-header field."""
    fields = header_fields()
    if byte not in fields:
        near = sorted(fields, key=lambda b: abs(b - byte))[:3]
        raise ConfigError(
            f"{what} {byte} is not the first byte of a SEG-Y trace-header field; nearest: "
            + ", ".join(f"{b} ({fields[b]})" for b in sorted(near))
        )


def header_values(f: segyio.SegyFile, byte: int) -> np.ndarray:
    """One trace-header field (by its 1-based byte) of every trace."""
    return np.asarray(f.attributes(byte)[:], dtype=np.int64)


def _grid_shape(il: np.ndarray, xl: np.ndarray) -> tuple[int, int] | None:
    """(inlines, crosslines) when the pairs form a full grid of at least 2 x 2, else None."""
    n_il, n_xl = len(np.unique(il)), len(np.unique(xl))
    if n_il < 2 or n_xl < 2 or n_il * n_xl != len(il):
        return None
    pairs = np.unique(np.stack([il, xl], axis=1), axis=0)
    return (n_il, n_xl) if len(pairs) == len(il) else None


def grid_candidates(f: segyio.SegyFile, skip: tuple[int, int] | None = None) -> list[str]:
    """Byte pairs of :data:`GRID_CANDIDATES` whose values form a full grid, described."""
    found = []
    for ib, xb in GRID_CANDIDATES:
        if (ib, xb) == skip:
            continue
        shape = _grid_shape(header_values(f, ib), header_values(f, xb))
        if shape:
            found.append(f"--iline-byte {ib} --xline-byte {xb} ({shape[0]} x {shape[1]})")
    return found


def looks_2d(f: segyio.SegyFile) -> bool:
    """CDP numbers (byte 21) that change monotonically trace by trace: a 2D line."""
    cdp = header_values(f, CDP_BYTE)
    if len(cdp) < 2:
        return False
    step = np.diff(cdp)
    return bool((step > 0).all() or (step < 0).all())


def _unstructured_error(p: Probe, options: SegyOptions, why: str) -> DataError:
    with _open_unstructured(p) as f:
        cands = grid_candidates(f, (options.iline_byte, options.xline_byte))
        two_d = looks_2d(f)
    bytes_ = f"bytes {options.iline_byte}/{options.xline_byte}"
    if cands:
        hint = "the traces form a grid with " + " or ".join(cands) + ": rerun with those options"
    elif two_d:
        hint = (
            f"it looks like a 2D line (CDP numbers at byte {CDP_BYTE} change monotonically): "
            "rerun with --2d to take the traces, in file order, as one line"
        )
    else:
        hint = (
            "no common byte pair forms a grid either: give the bytes that hold the inline and "
            "crossline numbers (--iline-byte, --xline-byte), or --2d to take the traces, in "
            "file order, as one line"
        )
    return DataError(f"{p.path}: unstructured at {bytes_} ({why}); {hint}")


def open_geometry(path: str | os.PathLike[str], options: SegyOptions | None = None) -> Geometry:
    """The file's geometry, or a DataError that says what to do."""
    options = options or SegyOptions()
    check_header_byte(options.iline_byte, "--iline-byte")
    check_header_byte(options.xline_byte, "--xline-byte")
    p = probe(path, options.endian)
    if options.two_d:
        return _two_d_geometry(p, options, "--2d: the traces in file order")
    try:
        f = segyio.open(
            p.path, "r", iline=options.iline_byte, xline=options.xline_byte, endian=p.endian
        )
    except (RuntimeError, ValueError, KeyError, IndexError) as exc:
        raise _unstructured_error(p, options, str(exc).strip().rstrip(".")) from None
    except OSError as exc:
        raise DataError(f"{p.path}: segyio cannot read it: {exc}") from None
    with f:
        if f.unstructured:
            raise _unstructured_error(p, options, "segyio finds no inline/crossline sorting")
        if len(f.offsets) > 1:
            raise DataError(
                f"{p.path}: prestack data ({len(f.offsets)} offsets per inline/crossline "
                "position); stack it first (one trace per position)"
            )
        sorting: Direction = (
            "inline" if f.sorting == segyio.TraceSortingFormat.INLINE_SORTING else "crossline"
        )
        ilines, xlines = np.asarray(f.ilines), np.asarray(f.xlines)
    kind: Literal["3d", "2d"] = "2d" if min(len(ilines), len(xlines)) == 1 else "3d"
    if kind == "2d":  # one line at these bytes: a 2D line, unless other bytes form a grid
        with _open_unstructured(p) as f:
            cands = grid_candidates(f, (options.iline_byte, options.xline_byte))
        if cands:
            raise DataError(
                f"{p.path}: bytes {options.iline_byte}/{options.xline_byte} make it a single "
                f"line of {p.n_traces} traces, but the traces form a grid with "
                + " or ".join(cands)
                + ": rerun with those options (or with --2d if it is a 2D line)"
            )
    if kind == "2d" and len(ilines) != 1:  # one crossline: make it the (only) inline
        return _two_d_geometry(p, options, "one crossline, taken as a 2D line")
    return Geometry(p, kind, ilines, xlines, sorting, options.iline_byte, options.xline_byte)


def _two_d_geometry(p: Probe, options: SegyOptions, note: str) -> Geometry:
    with _open_unstructured(p) as f:
        cdp = header_values(f, CDP_BYTE)
    numbers = cdp if len(np.unique(cdp)) == len(cdp) else np.arange(1, p.n_traces + 1)
    return Geometry(
        p,
        "2d",
        np.array([0]),
        numbers,
        "inline",
        options.iline_byte,
        options.xline_byte,
        (note,),
    )


# --------------------------------------------------------------------------- reading


class SegyReader:
    """Lines and traces of a file, through segyio (memory-mapped when ``mmap``)."""

    def __init__(self, geometry: Geometry, mmap: bool = True) -> None:
        self.geometry = geometry
        p = geometry.probe
        try:
            self._f = segyio.open(p.path, "r", ignore_geometry=True, endian=p.endian)
        except (RuntimeError, OSError) as exc:
            raise DataError(f"{p.path}: segyio cannot read it: {exc}") from None
        self.mmap = bool(mmap and self._f.mmap())
        self._raw = open(p.path, "rb")  # noqa: SIM115 - closed in close()

    def close(self) -> None:
        self._f.close()
        self._raw.close()

    def __enter__(self) -> SegyReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def traces(self, index: np.ndarray) -> np.ndarray:
        """Samples of the given traces, float32 ``(len(index), samples)``."""
        index = np.asarray(index)
        out = np.empty((len(index), self.geometry.probe.n_samples), dtype=np.float32)
        if len(index) and (np.diff(index) == 1).all():
            lo = int(index[0])
            out[:] = self._f.trace.raw[lo : lo + len(index)]
        else:
            for r, t in enumerate(index):
                out[r] = self._f.trace.raw[int(t)]
        return out

    def line(self, direction: Direction, k: int) -> np.ndarray:
        """Line ``k`` (0-based) of ``direction``: ``(traces, samples)`` float32."""
        return self.traces(self.geometry.line_traces(direction, k))

    def raw_headers(self, lo: int, hi: int) -> np.ndarray:
        """The 240-byte trace headers of traces ``lo:hi``, as uint8 ``(hi - lo, 240)``."""
        p = self.geometry.probe
        n = hi - lo
        buf = os.pread(self._raw.fileno(), n * p.trace_bytes, p.data_offset + lo * p.trace_bytes)
        if len(buf) != n * p.trace_bytes:
            raise DataError(f"{p.path}: short read at trace {lo}: the file changed or is damaged")
        blocks = np.frombuffer(buf, dtype=np.uint8).reshape(n, p.trace_bytes)
        return blocks[:, :TRACE_HEADER_BYTES].copy()

    def file_headers(self) -> bytes:
        """Text, binary and extended text headers, as in the file."""
        p = self.geometry.probe
        return os.pread(self._raw.fileno(), p.data_offset, 0)

    def sample_traces(self, n: int, seed: int = 0) -> np.ndarray:
        """Up to ``n`` traces spread over the file (a seeded sample, sorted), float32."""
        total = self.geometry.probe.n_traces
        index = np.arange(total)
        if total > n:
            index = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
        return self.traces(index)


# --------------------------------------------------------------------------- amplitudes


@dataclass(frozen=True)
class AmplitudeMap:
    """Amplitude -> 8-bit grey, like the competition tiles (zero amplitude mid-grey).

    ``symmetric``: ``[-c, c]`` -> ``[0, 255]`` with ``c`` the larger of ``|lo|`` and ``|hi|``;
    ``range``: ``[lo, hi]`` -> ``[0, 255]``. ``lo`` and ``hi`` are the ``percentiles`` of
    the samples of ``n_traces`` live traces; amplitudes beyond are clipped.
    """

    percentiles: tuple[float, float]
    lo: float
    hi: float
    mode: Literal["symmetric", "range"]
    n_traces: int
    n_dead: int

    @property
    def bounds(self) -> tuple[float, float]:
        if self.mode == "symmetric":
            c = max(abs(self.lo), abs(self.hi))
            return -c, c
        return self.lo, self.hi

    def to_grey(self, amplitudes: np.ndarray) -> np.ndarray:
        """uint8 grey of float amplitudes (any shape)."""
        a, b = self.bounds
        scale = 255.0 / (b - a) if b > a else 0.0
        grey = (np.asarray(amplitudes, dtype=np.float32) - np.float32(a)) * np.float32(scale)
        return np.clip(np.rint(grey), 0, 255).astype(np.uint8)

    def to_json(self) -> dict[str, Any]:
        a, b = self.bounds
        return {
            "percentiles": list(self.percentiles),
            "percentile_values": [self.lo, self.hi],
            "mode": self.mode,
            "clip": [a, b],
            "grey": f"round(255 * (clip(amplitude, {a:.6g}, {b:.6g}) - {a:.6g}) / {b - a:.6g})",
            "traces_sampled": self.n_traces,
            "dead_traces_left_out": self.n_dead,
        }


def _live(sample: np.ndarray) -> tuple[np.ndarray, int]:
    live = np.isfinite(sample).all(axis=1) & (np.abs(sample).max(axis=1) > 0)
    return sample[live], int((~live).sum())


def fit_amplitude_map(
    reader: SegyReader,
    percentiles: tuple[float, float] = (0.5, 99.5),
    mode: Literal["symmetric", "range"] = "symmetric",
    max_traces: int = 2000,
    seed: int = 0,
) -> AmplitudeMap:
    """Clip values from a sample of at most ``max_traces`` traces (dead traces left out)."""
    lo_p, hi_p = percentiles
    if not 0 <= lo_p < hi_p <= 100:
        raise DataError(f"clip percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    live, dead = _live(reader.sample_traces(max_traces, seed))
    if not len(live):
        raise DataError(f"{reader.geometry.path}: every sampled trace is dead (zero or NaN)")
    lo, hi = (float(v) for v in np.percentile(live, [lo_p, hi_p]))
    return AmplitudeMap((lo_p, hi_p), lo, hi, mode, len(live), dead)


def amplitude_stats(reader: SegyReader, max_traces: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Min, max, mean, std, RMS and percentiles of a trace sample."""
    sample = reader.sample_traces(max_traces, seed)
    live, dead = _live(sample)
    values = live if len(live) else sample
    pct = [0.5, 1, 50, 99, 99.5]
    return {
        "traces_sampled": len(sample),
        "dead_traces": dead,
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "rms": float(np.sqrt(np.mean(values.astype(np.float64) ** 2))),
        "percentiles": dict(
            zip([f"p{q:g}" for q in pct], map(float, np.percentile(values, pct)), strict=True)
        ),
    }


# --------------------------------------------------------------------------- info


def describe(path: str | os.PathLike[str], options: SegyOptions | None = None) -> dict[str, Any]:
    """Everything ``saltseg segy info`` prints; a file without a grid is described, not refused
    (only an unreadable one raises)."""
    options = options or SegyOptions()
    p = probe(path, options.endian)
    info: dict[str, Any] = {
        "file": str(p.path),
        "bytes": p.size,
        "endianness": p.endian,
        "format": f"{p.format_code} ({FORMATS[p.format_code][0]})",
        "samples": p.n_samples,
        "sample_interval_us": p.sample_interval_us,
        "traces": p.n_traces,
        "extended_text_headers": p.ext_headers,
        "iline_byte": options.iline_byte,
        "xline_byte": options.xline_byte,
    }
    try:
        g = open_geometry(path, options)
    except DataError as exc:
        info.update(structured=False, kind="unstructured", problem=str(exc))
        g = _two_d_geometry(p, options, "")
    else:
        info.update(
            structured=True,
            kind="3D volume" if g.kind == "3d" else "2D line",
            sorting=g.sorting if g.kind == "3d" else "-",
            inlines=_range(g.ilines),
            crosslines=_range(g.xlines),
        )
        if g.notes:
            info["notes"] = "; ".join(g.notes)
    with SegyReader(g) as reader:
        info["amplitudes"] = amplitude_stats(reader)
    return info


def _range(values: np.ndarray) -> str:
    if len(values) == 1:
        return f"1 ({values[0]})"
    step = np.diff(values)
    inc = f" step {step[0]}" if (step == step[0]).all() else " (irregular steps)"
    return f"{len(values)} ({values[0]}..{values[-1]}{inc})"


# --------------------------------------------------------------------------- writing


class SegyWriter:
    """A float32 copy of a file's layout: headers from the input, samples from the caller.

    Open it on a temporary path; :meth:`write` takes trace blocks in any order (every trace
    must be written once before the file is complete).
    """

    def __init__(self, path: Path, reader: SegyReader) -> None:
        p = reader.geometry.probe
        self.probe = p
        self.dtype = np.dtype(
            [
                ("h", np.uint8, (TRACE_HEADER_BYTES,)),
                ("d", ">f4" if p.endian == "big" else "<f4", (p.n_samples,)),
            ]
        )
        self.offset = p.data_offset
        head = bytearray(reader.file_headers())
        head[_BIN_FORMAT : _BIN_FORMAT + 2] = IEEE_FLOAT.to_bytes(2, p.endian)
        self._fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._fh.write(head)
        self._fh.truncate(self.offset + p.n_traces * self.dtype.itemsize)

    def write(self, lo: int, headers: np.ndarray, samples: np.ndarray) -> None:
        """Traces ``lo:lo + len(samples)``: raw headers ``(n, 240)`` and samples ``(n, ns)``."""
        block = np.empty(len(samples), dtype=self.dtype)
        block["h"] = headers
        block["d"] = samples
        self._fh.seek(self.offset + lo * self.dtype.itemsize)
        self._fh.write(block.tobytes())

    def close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()


def file_order_blocks(g: Geometry) -> Iterator[tuple[Direction, int, int]]:
    """(direction, line position, first trace) of each line stored contiguously in the file."""
    direction: Direction = g.sorting
    per = g.n_lines("crossline" if direction == "inline" else "inline")
    for k in range(g.n_lines(direction)):
        yield direction, k, k * per


# --------------------------------------------------------------------------- creating


def write_volume(
    path: str | os.PathLike[str],
    volume: np.ndarray,
    ilines: np.ndarray | None = None,
    xlines: np.ndarray | None = None,
    sample_interval_us: int = 4000,
    sorting: Direction = "inline",
    iline_byte: int = 189,
    xline_byte: int = 193,
    endian: Endian = "big",
    text: str = "C 1 saltseg synthetic volume",
) -> Path:
    """A 3D float32 SEG-Y of ``volume`` ``(inlines, crosslines, samples)`` (tests, benchmarks),
    written one line at a time with inline/crossline numbers at the given bytes and the CDP
    number and coordinates in the usual places."""
    n_il, n_xl, ns = volume.shape
    ilines = np.arange(1, n_il + 1) if ilines is None else np.asarray(ilines)
    xlines = np.arange(1, n_xl + 1) if xlines is None else np.asarray(xlines)
    spec = segyio.spec()
    spec.iline, spec.xline = iline_byte, xline_byte
    spec.samples = np.arange(ns) * sample_interval_us / 1000.0
    spec.format = IEEE_FLOAT
    spec.ilines, spec.xlines = ilines, xlines
    spec.sorting = (
        segyio.TraceSortingFormat.INLINE_SORTING
        if sorting == "inline"
        else segyio.TraceSortingFormat.CROSSLINE_SORTING
    )
    spec.endian = endian
    path = Path(path)
    outer, inner = (ilines, xlines) if sorting == "inline" else (xlines, ilines)
    with segyio.create(str(path), spec) as f:
        f.text[0] = segyio.tools.create_text_header({1: text[4:]})
        f.bin.update(hdt=sample_interval_us, hns=ns, format=IEEE_FLOAT)
        t = 0
        for a, va in enumerate(outer):
            for b, vb in enumerate(inner):
                il, xl = (va, vb) if sorting == "inline" else (vb, va)
                f.header[t] = {
                    iline_byte: int(il),
                    xline_byte: int(xl),
                    segyio.su.cdp: t + 1,
                    segyio.su.cdpx: int(il) * 25,
                    segyio.su.cdpy: int(xl) * 25,
                    segyio.su.ns: ns,
                    segyio.su.dt: sample_interval_us,
                }
                i, j = (a, b) if sorting == "inline" else (b, a)
                f.trace[t] = np.ascontiguousarray(volume[i, j], dtype=np.float32)
                t += 1
    return path
