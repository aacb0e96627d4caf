"""Layer 5: EDA, training curves, prediction review and plotting helpers."""
