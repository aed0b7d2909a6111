"""Data layer: readers (files -> Sample), crops, augmentation, ASM soft landmarks, prepared folders, tf.data."""
