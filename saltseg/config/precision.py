"""Numeric precision of training: float32, or mixed bfloat16 where the CPU computes it natively.

Mixed bfloat16 (Keras ``mixed_bfloat16``) keeps every variable, the optimizer state and the
losses in float32 and runs the layers' arithmetic in bfloat16. On a CPU with native
bfloat16 dot products (x86 ``avx512_bf16`` or ``amx_bf16``; Arm ``bf16``) oneDNN's matrix
products and convolutions run at about twice the float32 rate; elsewhere bfloat16 is
emulated and slower, so ``auto`` picks it only where it is native. The weights files hold
float32 variables either way: a model trained in one precision loads and predicts in the
other.

On a GPU ``auto`` picks the mixed policy its generation computes fastest
(:func:`gpu_policy`): bfloat16 from compute capability 8.0 (Ampere) on, float16 on 7.x
(Volta, Turing: tensor cores without bfloat16; Keras scales the loss), float32 before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

Precision = Literal["float32", "mixed_bfloat16", "mixed_float16", "auto"]

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


def gpu_capability() -> tuple[int, int] | None:
    """The compute capability of the first visible GPU, or None without one."""
    import tensorflow as tf  # here: recipes name a precision without loading TensorFlow

    try:
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return None
        cc = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
    except (RuntimeError, ValueError):
        return None
    return tuple(cc) if cc else (0, 0)  # type: ignore[return-value]


def gpu_policy(capability: tuple[int, int] | None) -> str | None:
    """The mixed policy for a GPU of this compute capability; None when there is no GPU."""
    if capability is None:
        return None
    if capability >= (8, 0):
        return "mixed_bfloat16"
    if capability >= (7, 0):
        return "mixed_float16"
    return "float32"


def prediction_xla(on_gpu: bool) -> bool:
    """Whether prediction compiles the network with XLA: on a GPU (fused kernels, fewer
    launches); not on a CPU, where oneDNN's convolutions are already the fast path and XLA's
    measured slower here."""
    return on_gpu


def resolve_precision(
    precision: Precision, flags: set[str] | None = None, gpu: tuple[int, int] | None = None
) -> str:
    """The Keras dtype policy name for a recipe's ``precision`` on this machine.

    ``flags`` and ``gpu`` describe the machine (tests); without ``flags`` the CPU's flags
    and the first GPU (if any) are looked up.
    """
    if precision == "auto":
        if flags is None:
            flags, gpu = cpu_flags(), gpu_capability()
        on_gpu = gpu_policy(gpu)
        if on_gpu is not None:
            return on_gpu
        return "mixed_bfloat16" if has_native_bf16(flags) else "float32"
    if precision not in ("float32", "mixed_bfloat16", "mixed_float16"):
        raise ValueError(
            f"unknown precision {precision!r} (float32, mixed_bfloat16, mixed_float16 or auto)"
        )
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
