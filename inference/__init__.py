"""Using a trained model on photos: backends (torch / ONNX Runtime), face finding + alignment, the embedding loop and
all-against-all comparison. The tasks embed, compare, enroll and identify
(`python main.py task=...`) are its front ends."""
