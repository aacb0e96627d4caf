"""Layer 0: errors, atomic writes, RLE, the competition metric and the plugin registry."""
