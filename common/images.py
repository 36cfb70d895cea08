"""Which files count as images, everywhere the project lists a folder (packing, preparation, inference)."""

from pathlib import Path

# the union of what OpenCV decodes and the tools used to accept (.tif/.tiff were inference-only, .webp not in prepare)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
