"""Layer 4: networks from their specs, weights, probabilities; a stage's prediction."""
