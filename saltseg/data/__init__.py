"""Layer 2: TGS folders and tiles, folds, adapters, augmentation, probability and CSV files."""
