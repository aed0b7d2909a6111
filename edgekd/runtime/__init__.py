"""Runtime: run an exported (or Keras) landmark model on images the way a phone app would."""
from edgekd.detector import Detection, DetectorMapping, FaceDetector, fit_detector_mapping
from edgekd.runtime.model import LandmarkModel, ModelInfo
from edgekd.runtime.predictor import Face, Predictor, draw_faces, predict_file

__all__ = ["Detection", "DetectorMapping", "Face", "FaceDetector", "LandmarkModel", "ModelInfo", "Predictor",
           "draw_faces", "fit_detector_mapping", "predict_file"]
