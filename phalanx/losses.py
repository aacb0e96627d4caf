"""phalanx v3 deep-supervision losses, written with ``keras.ops`` only.

The original (``phalanx/train_cv.py``): ``lovasz(fused) + BCE(empty) + lovasz_pixel(pixel)``
with unit weights, where the classifier target is 1 for an EMPTY mask and the pixel term is
``mean over the batch of [mask non-empty] * lovasz_i`` (empty images count as zeros in the
mean; ``pixel_normalization="non_empty"`` divides by the non-empty count instead).
"""

from __future__ import annotations

from typing import Any, Literal

import keras
from keras import ops

from saltseg.nets.losses import (
    Activation,
    LovaszHingeLoss,
    as_float,
    bce_logits_elementwise,
    bce_probs_elementwise,
    check_activation,
    float_pair,
    lovasz_hinge,
    lovasz_hinge_per_image,
    non_empty,
)

PixelNormalization = Literal["batch", "non_empty"]
EmptyTarget = Literal["empty", "non_empty"]


def pixel_lovasz_per_image(
    y_true: Any,
    logits: Any,
    activation: Activation = "relu",
    normalization: PixelNormalization = "batch",
) -> Any:
    """``(B,)`` terms of the phalanx pixel-head loss; their batch mean is the loss.

    ``w_i = [sum(y_i) > 0]``. ``normalization="batch"`` (the original ``lovasz_hinge2``):
    ``loss = (1/B) sum_i w_i L_i``. ``"non_empty"``: ``loss = sum_i w_i L_i / max(sum_i w_i, 1)``
    (0, not NaN, for a batch without a non-empty image).
    """
    if normalization not in ("batch", "non_empty"):
        raise ValueError(f"normalization must be 'batch' or 'non_empty', got {normalization!r}")
    y, x = float_pair(y_true, logits)
    w = non_empty(y)
    terms = lovasz_hinge_per_image(y, x, activation) * w
    if normalization == "non_empty":
        batch = ops.cast(ops.shape(w)[0], w.dtype)
        terms = terms * batch / ops.maximum(ops.sum(w), 1.0)
    return terms


def pixel_lovasz(
    y_true: Any,
    logits: Any,
    activation: Activation = "relu",
    normalization: PixelNormalization = "batch",
) -> Any:
    """phalanx pixel-head loss: Lovasz hinge on non-empty images only (see above)."""
    return ops.mean(pixel_lovasz_per_image(y_true, logits, activation, normalization))


def empty_targets(y_true: Any, target: EmptyTarget = "empty") -> Any:
    """``(B,)`` targets of the image classifier.

    ``y_true`` is either the masks (rank >= 3): the target is ``[mask empty]`` (the original
    phalanx label) or ``[mask non-empty]`` for ``target="non_empty"``; or already the
    ``(B,)``/``(B, 1)`` targets, used as given.
    """
    y = as_float(y_true)
    if len(y.shape) >= 3:
        full = non_empty(y)
        return 1.0 - full if target == "empty" else full
    return ops.reshape(y, (-1,))


def empty_bce_per_image(
    y_true: Any, y_pred: Any, from_logits: bool = True, target: EmptyTarget = "empty"
) -> Any:
    """``(B,)`` BCE of the image classifier ``y_pred`` (``(B,)`` or ``(B, 1)``)."""
    if target not in ("empty", "non_empty"):
        raise ValueError(f"target must be 'empty' or 'non_empty', got {target!r}")
    x = ops.reshape(as_float(y_pred), (-1,))
    t = ops.cast(empty_targets(y_true, target), x.dtype)
    if from_logits:
        return bce_logits_elementwise(t, x)
    return bce_probs_elementwise(t, x)


def empty_bce(
    y_true: Any, y_pred: Any, from_logits: bool = True, target: EmptyTarget = "empty"
) -> Any:
    """Mean BCE ``-(t log p + (1-t) log(1-p))`` of the empty-mask classifier over the batch."""
    return ops.mean(empty_bce_per_image(y_true, y_pred, from_logits, target))


def phalanx_deep_supervision_loss(
    y_true: Any,
    fused: Any,
    pixel: Any,
    empty: Any,
    *,
    fused_activation: Activation = "relu",
    pixel_activation: Activation = "relu",
    pixel_normalization: PixelNormalization = "batch",
    empty_from_logits: bool = True,
    empty_target: EmptyTarget = "empty",
) -> Any:
    """phalanx v3 loss ``Lovasz(fused) + BCE(empty) + Lovasz_nonempty(pixel)``, unit weights.

    ``y_true``: the masks; ``fused``, ``pixel``: segmentation logits; ``empty``: the image
    classifier's logit (probability if ``empty_from_logits=False``) that the mask is empty.
    Equals the sum of the three losses of :func:`deep_supervision_losses`.
    """
    fused = as_float(fused)
    pixel, empty = ops.cast(pixel, fused.dtype), ops.cast(empty, fused.dtype)
    return (
        lovasz_hinge(y_true, fused, per_image=True, activation=fused_activation)
        + empty_bce(y_true, empty, from_logits=empty_from_logits, target=empty_target)
        + pixel_lovasz(y_true, pixel, pixel_activation, pixel_normalization)
    )


@keras.saving.register_keras_serializable(package="saltseg")
class PixelLovaszLoss(keras.losses.Loss):
    """phalanx pixel-head loss: Lovasz hinge on non-empty images only (:func:`pixel_lovasz`)."""

    def __init__(
        self,
        activation: Activation = "relu",
        normalization: PixelNormalization = "batch",
        name: str = "pixel_lovasz",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        check_activation(activation)
        if normalization not in ("batch", "non_empty"):
            raise ValueError(f"normalization must be 'batch' or 'non_empty', got {normalization!r}")
        self.activation = activation
        self.normalization = normalization

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return pixel_lovasz_per_image(y_true, y_pred, self.activation, self.normalization)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "activation": self.activation,
            "normalization": self.normalization,
        }


@keras.saving.register_keras_serializable(package="saltseg")
class EmptyBCELoss(keras.losses.Loss):
    """BCE of the image-level empty classifier (:func:`empty_bce`).

    ``y_true`` may be the masks (the target is derived: 1 for an empty mask by default) or
    the ``(B,)``/``(B, 1)`` targets themselves.
    """

    def __init__(
        self,
        from_logits: bool = True,
        target: EmptyTarget = "empty",
        name: str = "empty_bce",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        if target not in ("empty", "non_empty"):
            raise ValueError(f"target must be 'empty' or 'non_empty', got {target!r}")
        self.from_logits = bool(from_logits)
        self.target = target

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return empty_bce_per_image(y_true, y_pred, self.from_logits, self.target)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_logits": self.from_logits, "target": self.target}


def deep_supervision_losses(
    fused_activation: Activation = "relu",
    pixel_activation: Activation = "relu",
    pixel_normalization: PixelNormalization = "batch",
    empty_from_logits: bool = True,
    empty_target: EmptyTarget = "empty",
) -> dict[str, keras.losses.Loss]:
    """Per-output losses of a phalanx v3 model with outputs ``fused``, ``pixel``, ``empty``.

    Compile with ``loss=deep_supervision_losses()`` (unit ``loss_weights``) and feed the mask
    as ``y_true`` of every output; the sum is :func:`phalanx_deep_supervision_loss`.
    """
    return {
        "fused": LovaszHingeLoss(activation=fused_activation, name="fused_lovasz"),
        "pixel": PixelLovaszLoss(
            activation=pixel_activation, normalization=pixel_normalization, name="pixel_lovasz"
        ),
        "empty": EmptyBCELoss(from_logits=empty_from_logits, target=empty_target, name="empty_bce"),
    }
