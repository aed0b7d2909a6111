"""Floor 0, the foundations every other floor stands on: errors, logs, atomic files, schemes, the crop, image and
point files, metrics, timing, model metadata, the interpreter, checkpoints and the face detector."""
