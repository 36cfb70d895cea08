"""The procedural mixed-quality benchmark, in every real format the project reads (docs/synthetic.md).

`builder` plans and writes the sets, `render` draws faces, `quality` degrades captures. Build with
`python -m dataset.synthetic --out DIR --preset demo` or `dataset.synthetic.build(out_dir, preset, seed)`.
"""

from dataset.synthetic.builder import GENERATOR_VERSION, PRESETS, Preset, build, cache_name, save_samples

__all__ = ["GENERATOR_VERSION", "PRESETS", "Preset", "build", "cache_name", "save_samples"]
