"""PNG previews of ``saltseg segy predict``: a line's section and its salt side by side."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saltseg.core.errors import ConfigError
from saltseg.data.segy import AmplitudeMap, Direction, Geometry, SegyReader
from saltseg.report.plots import OUTLINE_COLOUR, new_figure, save_figure

_ALIASES: dict[str, Direction] = {
    "inline": "inline",
    "il": "inline",
    "crossline": "crossline",
    "xline": "crossline",
    "xl": "crossline",
}


@dataclass(frozen=True)
class LineChoice:
    """A line by its direction and its number in the file's headers."""

    direction: Direction
    number: int


def parse_line(text: str) -> LineChoice:
    """``inline:N``, ``crossline:N`` (also ``il``/``xl``/``xline``) or ``N`` (an inline)."""
    kind, _, num = text.rpartition(":")
    direction = _ALIASES.get(kind.lower() or "inline")
    try:
        number = int(num)
    except ValueError:
        direction = None
    if direction is None:
        raise ConfigError(f"--preview-lines {text!r}: use inline:N, crossline:N or N")
    return LineChoice(direction, number)


def default_lines(g: Geometry) -> list[LineChoice]:
    """The middle inline, and the middle crossline of a 3D volume."""
    out = [LineChoice("inline", int(g.ilines[len(g.ilines) // 2]))]
    if g.kind == "3d":
        out.append(LineChoice("crossline", int(g.xlines[len(g.xlines) // 2])))
    return out


def line_position(g: Geometry, choice: LineChoice) -> int:
    """The 0-based position of a chosen line (an error names the valid range)."""
    numbers = g.line_numbers(choice.direction)
    hits = np.flatnonzero(numbers == choice.number)
    if g.kind == "2d" and choice.direction == "inline":
        return 0
    if not len(hits):
        raise ConfigError(
            f"{g.path}: no {choice.direction} {choice.number}; they run {numbers[0]}..{numbers[-1]}"
        )
    return int(hits[0])


def save_line_previews(
    geometry: Geometry,
    probability: Geometry,
    amplitude: AmplitudeMap,
    lines: list[LineChoice],
    threshold: float,
    out_dir: Path,
) -> list[Path]:
    """One PNG per line: the grey section, and the section with the salt tinted and outlined
    (probability > ``threshold``), side by side; returns the paths."""
    positions = [line_position(geometry, c) for c in lines]
    paths = []
    with SegyReader(geometry) as src, SegyReader(probability) as prob_file:
        for choice, k in zip(lines, positions, strict=True):
            grey = amplitude.to_grey(src.line(choice.direction, k)).T
            prob = prob_file.line(choice.direction, k).T
            name = f"{choice.direction}_{choice.number}.png"
            paths.append(
                _draw(grey, prob, threshold, f"{choice.direction} {choice.number}", out_dir / name)
            )
    return paths


def _draw(grey: np.ndarray, prob: np.ndarray, threshold: float, title: str, out: Path) -> Path:
    rows, cols = grey.shape
    width = min(16.0, max(6.0, 2 * cols / 60 + 1))
    fig = new_figure(width, min(10.0, max(3.0, rows / 60 + 1)))
    mask = prob > threshold
    tint = np.zeros((rows, cols, 4), dtype=np.float32)
    tint[mask] = (1.0, 0.2, 0.2, 0.35)
    for i, (label, overlay) in enumerate([("section", False), ("salt", True)]):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.imshow(grey, cmap="gray", vmin=0, vmax=255, aspect="auto", interpolation="nearest")
        if overlay:
            ax.imshow(tint, aspect="auto", interpolation="nearest")
            if mask.any() and not mask.all():
                ax.contour(prob, levels=[threshold], colors=OUTLINE_COLOUR, linewidths=0.8)
        ax.set_title(f"{title}: {label}", fontsize=8)
        ax.set_xlabel("trace", fontsize=7)
        ax.set_ylabel("sample", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return save_figure(fig, out)
