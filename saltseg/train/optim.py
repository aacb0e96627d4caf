"""SGD exactly as PyTorch's ``torch.optim.SGD`` computes it, with its coupled L2 decay.

PyTorch adds ``weight_decay * w`` to the gradient and keeps a momentum buffer of gradients:

    g = grad + wd * w;  v = momentum * v + g  (v = g at the first step);  w -= lr * v

(Nesterov: ``w -= lr * (g + momentum * v)``). The decay therefore goes through momentum,
about ``1 / (1 - momentum)`` = 10x stronger at 0.9 than Keras' decoupled ``weight_decay``,
and a changed learning rate applies to the whole buffer. This is what the original phalanx
trained with; recipes ask for it with ``weight_decay_mode: coupled``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="saltseg")
class TorchSGD(keras.optimizers.Optimizer):
    """PyTorch-semantics SGD: momentum buffer of (gradient + ``l2`` * weight), no dampening."""

    def __init__(
        self,
        learning_rate: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        l2: float = 0.0,
        name: str = "torch_sgd",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.l2 = float(l2)

    def build(self, variables: list[Any]) -> None:
        if self.built:
            return
        super().build(variables)
        self.buffers = [
            self.add_variable_from_reference(v, name="momentum") if self.momentum else None
            for v in variables
        ]

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        # The gradient only feeds assign ops and a product here: an ``Add`` of a MatMul's
        # gradient and the decay term makes TensorFlow's CPU remapper fuse them into a
        # kernel it does not implement ("Fusion is not implemented: [BiasAdd,Add]").
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        if not self.momentum:  # w -= lr * (g + l2 w)
            if self.l2:
                self.assign_sub(variable, ops.multiply(lr * self.l2, variable))
            self.assign_sub(variable, ops.multiply(lr, g))
            return
        buf = self.buffers[self._get_variable_index(variable)]
        decay = ops.multiply(self.l2, variable)
        self.assign(buf, ops.add(ops.multiply(self.momentum, buf), decay))
        self.assign_add(buf, g)  # buf = momentum * buf + g + l2 w
        if self.nesterov:  # w -= lr * (g + l2 w + momentum * buf)
            self.assign_sub(variable, ops.multiply(lr, decay + ops.multiply(self.momentum, buf)))
            self.assign_sub(variable, ops.multiply(lr, g))
        else:
            self.assign_sub(variable, ops.multiply(lr, buf))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "l2": self.l2,
        }
