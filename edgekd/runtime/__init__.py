"""Runtime: run an exported (or Keras) landmark model on images and video the way a phone app would."""
from edgekd.core.detector import Detection, DetectorMapping, FaceDetector, fit_detector_mapping
from edgekd.runtime.api import FaceLandmarks, Landmarker, Result
from edgekd.runtime.blazeface import BlazeFace, TiledDetector, open_detector
from edgekd.runtime.model import LandmarkModel, ModelInfo
from edgekd.runtime.predictor import Face, Predictor, draw_faces, predict_file, write_face_points
from edgekd.runtime.tracker import FaceTracker, OneEuroFilter
from edgekd.runtime.video import track_video

__all__ = ["BlazeFace", "Detection", "DetectorMapping", "Face", "FaceDetector", "FaceLandmarks", "FaceTracker",
           "LandmarkModel", "Landmarker", "ModelInfo", "OneEuroFilter", "Predictor", "Result", "TiledDetector",
           "draw_faces", "fit_detector_mapping", "open_detector", "predict_file", "track_video", "write_face_points"]
