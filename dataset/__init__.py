"""Data layer: RecordIO, converters and torch datasets. Import submodules directly (kept light on purpose)."""
