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

The phalanx v3 deep-supervision loss is the phalanx family's (``phalanx/losses.py``).
Recipes name losses registered with :mod:`saltseg.core.registry`.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import keras
from keras import ops

Activation = Literal["relu", "elu+1"]

ACTIVATIONS = ("relu", "elu+1")
EPS = 1e-7  # probability clipping of the from_logits=False paths (Keras 2 epsilon)


# --------------------------------------------------------------------------- helpers


def as_float(x: Any) -> Any:
    """``x`` as a float tensor (float64 kept, anything else float32)."""
    x = ops.convert_to_tensor(x)
    if keras.backend.standardize_dtype(x.dtype) not in ("float32", "float64"):
        x = ops.cast(x, "float32")
    return x


def float_pair(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    """Float tensors with ``y_true`` in ``y_pred``'s dtype."""
    y_pred = as_float(y_pred)
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


def check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def bce_logits_elementwise(y: Any, x: Any) -> Any:
    """Stable ``-(y log s(x) + (1-y) log(1-s(x)))`` = ``max(x,0) - x*y + log1p(exp(-|x|))``."""
    return ops.relu(x) - x * y + ops.log1p(ops.exp(-ops.abs(x)))


def bce_probs_elementwise(y: Any, p: Any) -> Any:
    """``-(y log p + (1-y) log(1-p))`` with ``p`` clipped to ``[eps, 1-eps]``."""
    p = ops.clip(p, EPS, 1.0 - EPS)
    return -(y * ops.log(p) + (1.0 - y) * ops.log(1.0 - p))


def non_empty(y_true: Any) -> Any:
    """``(B,)`` float: 1 where the image's mask has at least one positive pixel."""
    y = as_float(y_true)
    return ops.cast(ops.sum(_rows(y), axis=-1) > 0, y.dtype)


# --------------------------------------------------------------------------- BCE / Dice


def bce_logits_per_image(y_true: Any, logits: Any) -> Any:
    """``(B,)`` mean binary cross-entropy of each image, from logits (stable form)."""
    y, x = float_pair(y_true, logits)
    return ops.mean(bce_logits_elementwise(_rows(y), _rows(x)), axis=-1)


def bce_logits(y_true: Any, logits: Any) -> Any:
    """Mean binary cross-entropy on logits.

    ``BCE = mean_pixels[max(x, 0) - x*y + log(1 + exp(-|x|))]`` (= ``-y log s(x) -
    (1-y) log(1 - s(x))`` without overflow).
    """
    return ops.mean(bce_logits_per_image(y_true, logits))


def soft_dice(y_true: Any, probs: Any, smooth: float = 1.0) -> Any:
    """Batch soft Dice ``(2 sum(y p) + s) / (sum(y) + sum(p) + s)`` over ALL pixels of the batch."""
    y, p = float_pair(y_true, probs)
    inter = ops.sum(y * p)
    return (2.0 * inter + smooth) / (ops.sum(y) + ops.sum(p) + smooth)


def _bce_dice_parts(y_true: Any, y_pred: Any, from_logits: bool, smooth: float) -> tuple[Any, Any]:
    y, x = float_pair(y_true, y_pred)
    y, x = _rows(y), _rows(x)
    if from_logits:
        bce = ops.mean(bce_logits_elementwise(y, x), axis=-1)
        probs = ops.sigmoid(x)
    else:
        bce = ops.mean(bce_probs_elementwise(y, x), axis=-1)
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
    check_activation(activation)
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
    y, x = float_pair(y_true, logits)
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
    y, x = float_pair(y_true, logits)
    return _lovasz_rows(ops.reshape(y, (1, -1)), ops.reshape(x, (1, -1)), activation)[0]


# --------------------------------------------------------------------------- Keras wrappers


def _broadcast_rows(value: Any, like: Any) -> Any:
    """Scalar ``value`` repeated once per image of ``like``."""
    return value * ops.ones_like(ops.sum(_rows(as_float(like)), axis=-1))


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
        check_activation(activation)
        self.per_image = bool(per_image)
        self.activation = activation

    def call(self, y_true: Any, y_pred: Any) -> Any:
        if self.per_image:
            return lovasz_hinge_per_image(y_true, y_pred, self.activation)
        loss = lovasz_hinge(y_true, y_pred, per_image=False, activation=self.activation)
        return _broadcast_rows(loss, y_pred)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "per_image": self.per_image, "activation": self.activation}


# --------------------------------------------------------------------------- registry

lovasz = partial(LovaszHingeLoss, activation="relu", name="lovasz")
"""The ``lovasz`` recipe loss: per-image Lovasz hinge with ``relu`` (phalanx)."""
lovasz_elu = partial(LovaszHingeLoss, activation="elu+1", name="lovasz_elu")
"""The ``lovasz_elu`` recipe loss: per-image Lovasz hinge with ``elu + 1`` (b.e.s.)."""


def get_loss(name: str, **kwargs: Any) -> keras.losses.Loss | dict[str, keras.losses.Loss]:
    """The loss called ``name`` in a recipe (a registered loss factory), built with ``kwargs``.

    A factory returns one :class:`keras.losses.Loss`, or a dict of them (one per output)
    for a multi-output network such as phalanx v3's ``deep_supervision``.
    """
    from saltseg.core.registry import REGISTRY

    return REGISTRY.get("losses", name)(**kwargs)
