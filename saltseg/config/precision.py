"""Numeric precision of training: float32, or mixed bfloat16 where the CPU computes it natively.

Mixed bfloat16 (Keras ``mixed_bfloat16``) keeps every variable, the optimizer state and the
losses in float32 and runs the layers' arithmetic in bfloat16. On a CPU with native
bfloat16 dot products (x86 ``avx512_bf16`` or ``amx_bf16``; Arm ``bf16``) oneDNN's matrix
products and convolutions run at about twice the float32 rate; elsewhere bfloat16 is
emulated and slower, so ``auto`` picks it only where it is native. The weights files hold
float32 variables either way: a model trained in one precision loads and predicts in the
other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

Precision = Literal["float32", "mixed_bfloat16", "auto"]

_NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}

# The dtype of the networks' output layers whatever the policy: Lovasz sorts the errors of
# the logits, and bfloat16 logits (8-bit mantissa) would be full of ties. Measured cost of
# float32 heads in the cpu profile: none.
HEAD_DTYPE = "float32"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The instruction-set flags the (Linux) kernel reports for the first CPU; empty if unknown."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return set(value.split())
    return set()


def has_native_bf16(flags: set[str] | None = None) -> bool:
    """Whether the CPU has bfloat16 dot-product instructions."""
    return bool((cpu_flags() if flags is None else flags) & _NATIVE_BF16_FLAGS)


def resolve_precision(precision: Precision, flags: set[str] | None = None) -> str:
    """The Keras dtype policy name for a recipe's ``precision`` on this machine."""
    if precision == "auto":
        return "mixed_bfloat16" if has_native_bf16(flags) else "float32"
    if precision not in ("float32", "mixed_bfloat16"):
        raise ValueError(f"unknown precision {precision!r} (float32, mixed_bfloat16 or auto)")
    return precision


@contextlib.contextmanager
def dtype_policy(policy: str) -> Iterator[None]:
    """Build layers under the Keras dtype policy ``policy``, then restore the previous one.

    Layers keep the policy they were built with, so only construction needs the context.
    """
    import keras  # here, so that recipes can name a precision without loading Keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
