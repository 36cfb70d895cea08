"""Which files count as images, everywhere the project lists a folder (packing, preparation, inference)."""

from pathlib import Path

# what OpenCV decodes; one list for packing, preparation and inference
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
