"""b.e.s. family: U-Net with a ResNeXt50 encoder (Keras in the original solution)."""
