"""saltseg: the 1st-place TGS Salt Identification solution (b.e.s. + phalanx) on Keras 3."""

__version__ = "0.1.0"

TILE = 101
"""Side of a TGS tile in pixels."""
