"""Layer 1: settings (SETTINGS.json), stage recipes, precision and the output layout."""
