"""Layer 4: fold data, batches, callbacks, the time budget, phases, stages, self-labels."""
