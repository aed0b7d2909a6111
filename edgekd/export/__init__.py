"""Floor 5: a trained checkpoint -> .tflite in every mode, with metadata and a model card."""
