"""Floor 3: training a stage (trainers, the stage loop, teacher outputs, QAT, a .tflite back into Keras)."""
