"""Detectors (image -> boxes, scores, labels) for the split steps: YOLO-style ONNX models, dlib faces,
OpenCV's HOG people detector. See `base.py`."""
