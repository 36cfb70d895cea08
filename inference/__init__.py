"""Using a trained model on photos: backends (torch / ONNX Runtime), face finding + alignment, the embedding loop and
all-against-all comparison. `tasks.embed` and `tasks.compare` are their Hydra front ends (`python main.py task=...`)."""
