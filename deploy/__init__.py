"""Deployable artifacts: ONNX export (fp32, fp16) and static INT8 quantization, with their checks."""
