"""Layer 5: blending, pseudo-labels and jigsaw-mosaic post-processing."""
