"""Training: the config, the loop, checkpoints and run folders, losses, augmentation, torchrun."""
