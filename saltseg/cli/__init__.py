"""Layer 6: the ``saltseg`` command line."""
