"""Floor 2: the networks (a registry of backbones) and the losses (a registry of plain losses, and KD-Loss)."""
