"""Raw downloads and photo folders -> what training and validation read; one module per source.

`tinyface`, `scface`, `ijb` write packed evaluation sets (``dataset.evalsets``); `folders` turns
``photos/<identity>/<image>`` into aligned identity folders. `summary` is the report every preparer returns, `workers`
the process pool they share. Command line: ``python -m dataset.prepare --help`` (`__main__`).
"""
