"""The shared training loop and its components (losses, metrics, checkpoints)."""
