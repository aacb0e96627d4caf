"""Segmentation losses of both families, written with ``keras.ops`` only (any backend).

Every loss takes ``(y_true, y_pred)`` with shapes ``(B, H, W, 1)`` or ``(B, H, W)``;
``y_pred`` holds LOGITS unless a ``from_logits`` argument says otherwise. The functions
return a scalar; the :class:`keras.losses.Loss` wrappers return one value per image so
that Keras' default ``sum_over_batch_size`` reduction gives the same scalar (and
``sample_weight`` weights images).

What the original code did (``bes/losses.py``, ``phalanx/lovasz_losses.py``,
``phalanx/train_cv.py`` of ybabakhin/kaggle_salt_bes_phalanx):

* b.e.s. BCE+Dice: ``0.5 * BCE + 0.5 * (1 - Dice)`` on sigmoid outputs, the Dice being ONE
  soft Dice over the whole flattened batch with smoothing 1.
* b.e.s. Lovasz: per-image Lovasz hinge with ``elu(e) + 1`` in place of ``relu(e)``.
* phalanx: per-image Lovasz hinge with ``relu`` (the final code; an early commit used elu+1).
* phalanx v3 deep supervision: ``lovasz(fused) + BCE(empty) + lovasz_pixel(pixel)`` with
  unit weights, where the classifier target is 1 for an EMPTY mask and the pixel term is
  ``mean over the batch of [mask non-empty] * lovasz_i`` (empty images count as zeros in the
  mean; ``pixel_normalization="non_empty"`` divides by the non-empty count instead).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Literal

import keras
from keras import ops

Activation = Literal["relu", "elu+1"]
PixelNormalization = Literal["batch", "non_empty"]
EmptyTarget = Literal["empty", "non_empty"]

_ACTIVATIONS = ("relu", "elu+1")
_EPS = 1e-7  # probability clipping of the from_logits=False paths (Keras 2 epsilon)


# --------------------------------------------------------------------------- helpers


def _float(x: Any) -> Any:
    """``x`` as a float tensor (float64 kept, anything else float32)."""
    x = ops.convert_to_tensor(x)
    if keras.backend.standardize_dtype(x.dtype) not in ("float32", "float64"):
        x = ops.cast(x, "float32")
    return x


def _pair(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    """Float tensors with ``y_true`` in ``y_pred``'s dtype."""
    y_pred = _float(y_pred)
    return ops.cast(ops.convert_to_tensor(y_true), y_pred.dtype), y_pred


def _rows(x: Any) -> Any:
    """Flatten everything but the batch axis: ``(B, ...) -> (B, P)``."""
    static = tuple(x.shape[1:])
    if all(d is not None for d in static):
        size = 1
        for d in static:
            size *= int(d)
        return ops.reshape(x, (-1, size))
    return ops.reshape(x, (ops.shape(x)[0], -1))


def _check_activation(activation: str) -> None:
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")


def _bce_logits_elementwise(y: Any, x: Any) -> Any:
    """Stable ``-(y log s(x) + (1-y) log(1-s(x)))`` = ``max(x,0) - x*y + log1p(exp(-|x|))``."""
    return ops.relu(x) - x * y + ops.log1p(ops.exp(-ops.abs(x)))


def _bce_probs_elementwise(y: Any, p: Any) -> Any:
    """``-(y log p + (1-y) log(1-p))`` with ``p`` clipped to ``[eps, 1-eps]``."""
    p = ops.clip(p, _EPS, 1.0 - _EPS)
    return -(y * ops.log(p) + (1.0 - y) * ops.log(1.0 - p))


def non_empty(y_true: Any) -> Any:
    """``(B,)`` float: 1 where the image's mask has at least one positive pixel."""
    y = _float(y_true)
    return ops.cast(ops.sum(_rows(y), axis=-1) > 0, y.dtype)


# --------------------------------------------------------------------------- BCE / Dice


def bce_logits_per_image(y_true: Any, logits: Any) -> Any:
    """``(B,)`` mean binary cross-entropy of each image, from logits (stable form)."""
    y, x = _pair(y_true, logits)
    return ops.mean(_bce_logits_elementwise(_rows(y), _rows(x)), axis=-1)


def bce_logits(y_true: Any, logits: Any) -> Any:
    """Mean binary cross-entropy on logits.

    ``BCE = mean_pixels[max(x, 0) - x*y + log(1 + exp(-|x|))]`` (= ``-y log s(x) -
    (1-y) log(1 - s(x))`` without overflow).
    """
    return ops.mean(bce_logits_per_image(y_true, logits))


def soft_dice(y_true: Any, probs: Any, smooth: float = 1.0) -> Any:
    """Batch soft Dice ``(2 sum(y p) + s) / (sum(y) + sum(p) + s)`` over ALL pixels of the batch."""
    y, p = _pair(y_true, probs)
    inter = ops.sum(y * p)
    return (2.0 * inter + smooth) / (ops.sum(y) + ops.sum(p) + smooth)


def _bce_dice_parts(y_true: Any, y_pred: Any, from_logits: bool, smooth: float) -> tuple[Any, Any]:
    y, x = _pair(y_true, y_pred)
    y, x = _rows(y), _rows(x)
    if from_logits:
        bce = ops.mean(_bce_logits_elementwise(y, x), axis=-1)
        probs = ops.sigmoid(x)
    else:
        bce = ops.mean(_bce_probs_elementwise(y, x), axis=-1)
        probs = x
    return bce, soft_dice(y, probs, smooth)


def bce_dice(
    y_true: Any,
    y_pred: Any,
    from_logits: bool = True,
    smooth: float = 1.0,
    bce_weight: float = 0.5,
    dice_weight: float = 0.5,
) -> Any:
    """b.e.s. stage-1 loss ``0.5 * BCE + 0.5 * (1 - Dice)``.

    ``BCE`` is the mean pixel cross-entropy; ``Dice = (2 sum(y p) + 1) / (sum(y) + sum(p) + 1)``
    is computed ONCE over the whole flattened batch (not per image), smoothing 1, with
    ``p = sigmoid(y_pred)`` when ``from_logits`` (the original used a sigmoid head; passing
    logits here is the same loss in a numerically safer form) else ``p = y_pred``.
    """
    bce, dice = _bce_dice_parts(y_true, y_pred, from_logits, smooth)
    return bce_weight * ops.mean(bce) + dice_weight * (1.0 - dice)


# --------------------------------------------------------------------------- Lovasz


def lovasz_grad(gt_sorted: Any) -> Any:
    """Gradient of the Lovasz extension of the Jaccard loss w.r.t. sorted errors (rows).

    With ``g = sum(gt)``, ``J_k = 1 - (g - cumsum(gt)_k) / (g + cumsum(1 - gt)_k)`` and
    ``grad = [J_1, J_2 - J_1, ..., J_P - J_{P-1}]``. The union is at least 1 for every ``k``
    (if ``g = 0`` the first sorted pixel is a negative), so empty masks are well defined.
    """
    gts = ops.sum(gt_sorted, axis=-1, keepdims=True)
    intersection = gts - ops.cumsum(gt_sorted, axis=-1)
    union = gts + ops.cumsum(1.0 - gt_sorted, axis=-1)
    jaccard = 1.0 - intersection / union
    return ops.concatenate([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], axis=-1)


def _lovasz_rows(labels: Any, logits: Any, activation: str) -> Any:
    """Lovasz hinge of each row of ``(N, P)`` labels/logits, vectorised with ``top_k``."""
    _check_activation(activation)
    signs = 2.0 * labels - 1.0
    errors = 1.0 - logits * signs
    k = errors.shape[-1] if errors.shape[-1] is not None else ops.shape(errors)[-1]
    errors_sorted, perm = ops.top_k(errors, k=k, sorted=True)
    gt_sorted = ops.take_along_axis(labels, perm, axis=-1)
    grad = ops.stop_gradient(lovasz_grad(gt_sorted))
    hinge = ops.relu(errors_sorted) if activation == "relu" else ops.elu(errors_sorted) + 1.0
    return ops.sum(hinge * grad, axis=-1)


def lovasz_hinge_per_image(y_true: Any, logits: Any, activation: Activation = "relu") -> Any:
    """``(B,)`` Lovasz hinge of each image (see :func:`lovasz_hinge`)."""
    y, x = _pair(y_true, logits)
    return _lovasz_rows(_rows(y), _rows(x), activation)


def lovasz_hinge(
    y_true: Any, logits: Any, per_image: bool = True, activation: Activation = "relu"
) -> Any:
    """Binary Lovasz hinge (Berman et al., CVPR 2018).

    For one image with labels ``y`` and logits ``x``: errors ``e = 1 - x * (2y - 1)``, sorted
    descending into ``e_s`` (labels permuted alike into ``y_s``); ``loss = dot(act(e_s),
    lovasz_grad(y_s))`` with ``act = relu`` or, for ``activation="elu+1"`` (b.e.s.),
    ``act(e) = elu(e) + 1``. ``per_image``: mean of the per-image losses; otherwise one loss
    over all pixels of the batch.
    """
    if per_image:
        return ops.mean(lovasz_hinge_per_image(y_true, logits, activation))
    y, x = _pair(y_true, logits)
    return _lovasz_rows(ops.reshape(y, (1, -1)), ops.reshape(x, (1, -1)), activation)[0]


# --------------------------------------------------------------------------- phalanx v3


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
    y, x = _pair(y_true, logits)
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
    y = _float(y_true)
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
    x = ops.reshape(_float(y_pred), (-1,))
    t = ops.cast(empty_targets(y_true, target), x.dtype)
    if from_logits:
        return _bce_logits_elementwise(t, x)
    return _bce_probs_elementwise(t, x)


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
    fused = _float(fused)
    pixel, empty = ops.cast(pixel, fused.dtype), ops.cast(empty, fused.dtype)
    return (
        lovasz_hinge(y_true, fused, per_image=True, activation=fused_activation)
        + empty_bce(y_true, empty, from_logits=empty_from_logits, target=empty_target)
        + pixel_lovasz(y_true, pixel, pixel_activation, pixel_normalization)
    )


# --------------------------------------------------------------------------- Keras wrappers


def _broadcast_rows(value: Any, like: Any) -> Any:
    """Scalar ``value`` repeated once per image of ``like``."""
    return value * ops.ones_like(ops.sum(_rows(_float(like)), axis=-1))


@keras.saving.register_keras_serializable(package="saltseg")
class BCELoss(keras.losses.Loss):
    """Mean binary cross-entropy on logits (:func:`bce_logits`), one value per image."""

    def __init__(self, name: str = "bce", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return bce_logits_per_image(y_true, y_pred)


@keras.saving.register_keras_serializable(package="saltseg")
class BCEDiceLoss(keras.losses.Loss):
    """b.e.s. ``0.5 BCE + 0.5 (1 - batch soft Dice, smoothing 1)`` (:func:`bce_dice`).

    Returns ``bce_weight * BCE_i + dice_weight * (1 - Dice_batch)`` per image; their mean is
    :func:`bce_dice`.
    """

    def __init__(
        self,
        from_logits: bool = True,
        smooth: float = 1.0,
        bce_weight: float = 0.5,
        dice_weight: float = 0.5,
        name: str = "bce_dice",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.from_logits = bool(from_logits)
        self.smooth = float(smooth)
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        bce, dice = _bce_dice_parts(y_true, y_pred, self.from_logits, self.smooth)
        return self.bce_weight * bce + self.dice_weight * (1.0 - dice)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "smooth": self.smooth,
            "bce_weight": self.bce_weight,
            "dice_weight": self.dice_weight,
        }


@keras.saving.register_keras_serializable(package="saltseg")
class LovaszHingeLoss(keras.losses.Loss):
    """Lovasz hinge on logits (:func:`lovasz_hinge`); ``activation`` ``relu`` or ``elu+1``."""

    def __init__(
        self,
        per_image: bool = True,
        activation: Activation = "relu",
        name: str = "lovasz",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        _check_activation(activation)
        self.per_image = bool(per_image)
        self.activation = activation

    def call(self, y_true: Any, y_pred: Any) -> Any:
        if self.per_image:
            return lovasz_hinge_per_image(y_true, y_pred, self.activation)
        loss = lovasz_hinge(y_true, y_pred, per_image=False, activation=self.activation)
        return _broadcast_rows(loss, y_pred)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "per_image": self.per_image, "activation": self.activation}


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
        _check_activation(activation)
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


# --------------------------------------------------------------------------- registry

LOSSES: dict[str, Callable[..., keras.losses.Loss]] = {
    "bce": BCELoss,
    "bce_dice": BCEDiceLoss,
    "lovasz": partial(LovaszHingeLoss, activation="relu", name="lovasz"),
    "lovasz_elu": partial(LovaszHingeLoss, activation="elu+1", name="lovasz_elu"),
}
"""Single-output losses by recipe name (``lovasz``: phalanx relu; ``lovasz_elu``: b.e.s.)."""

DEEP_SUPERVISION = "deep_supervision"


def get_loss(name: str, **kwargs: Any) -> keras.losses.Loss | dict[str, keras.losses.Loss]:
    """The loss called ``name`` in a recipe, built with ``kwargs``.

    ``"deep_supervision"`` returns the dict of :func:`deep_supervision_losses` (one loss per
    output of a phalanx v3 model); every other name a single :class:`keras.losses.Loss`.
    """
    if name == DEEP_SUPERVISION:
        return deep_supervision_losses(**kwargs)
    if name not in LOSSES:
        known = ", ".join([*LOSSES, DEEP_SUPERVISION])
        raise ValueError(f"unknown loss {name!r}; known: {known}")
    return LOSSES[name](**kwargs)
