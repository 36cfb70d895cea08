"""Small helpers every layer may use: the registry idiom, the ordered parallel map, the image-file extensions.

The lowest layer: it imports no other package of the project.
"""
