"""The procedural mixed-quality benchmark, in every real format the project reads (docs/synthetic.md).

`builder` plans and writes the benchmark sets, `photos` the identity-folder presets, `jobs` renders images in a
process pool, `render` draws faces, `quality` degrades captures, `cache` keys and publishes a build. Build with
`python -m dataset.synthetic --out DIR --preset demo` or `dataset.synthetic.build(out_dir, preset, seed)`.
"""

from dataset.synthetic.builder import PRESETS, Preset, build, save_samples
from dataset.synthetic.cache import GENERATOR_VERSION, cache_name

__all__ = ["GENERATOR_VERSION", "PRESETS", "Preset", "build", "cache_name", "save_samples"]
