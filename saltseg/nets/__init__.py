"""Layer 3: shared network layers, encoders, losses and the model registry."""
