"""The work of one run, training: the loop, its settings, the shared steps, checkpoints,
augmentation."""
