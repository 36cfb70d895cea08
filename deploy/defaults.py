"""Export defaults shared by both front ends, `python -m deploy.export` and task=export (whose schema reads them).

A module of its own so that composing a config does not import torch or onnx."""

OPSET = 18
CALIBRATION_COUNT = 256  # faces for INT8 calibration
CHECK_COUNT = 64  # held-out faces for the cosine check of a quantized artifact
