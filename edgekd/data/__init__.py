"""Floor 1, data: readers (files -> Sample), crops, augmentation, ASM soft landmarks, prepared folders, tf.data."""
