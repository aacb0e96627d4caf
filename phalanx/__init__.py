"""phalanx family: U-ResNet34 with scSE, FPA centre and hypercolumn (PyTorch originally)."""
