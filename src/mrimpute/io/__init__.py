"""File input and output: NIfTI volumes and model checkpoints."""
