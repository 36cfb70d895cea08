"""`python -m dataset.synthetic --out DIR --preset demo`: build a preset (see dataset.synthetic.builder)."""

import sys

from dataset.synthetic.builder import main

sys.exit(main())
