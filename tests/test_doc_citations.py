"""Comments cite the docs by heading, and every cited heading exists.

A citation is `docs/<file>.md, "<heading>"` (the comma is optional; `README.md` may be cited the same way), in any
project .py file or conf/**/*.yaml. It resolves when the file has a markdown heading (outside code fences) whose text,
without a leading section number, is the cited text, either whole or without its parenthesised code pointers
("IR and IR-SE (`models/ir.py`), AdaFace layout" is cited as "IR and IR-SE, AdaFace layout"). Section numbers move
when a doc is reorganised, so `<file>.md section <N>` is no citation at all.
"""

import re
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SKIP_DIRS = {"outputs", "multirun", "lightning_logs", "data"}  # run outputs (see .gitignore), not project files

# the cited doc, a comma and/or whitespace, then the quoted heading; a comment may continue on the next line after `#`
BREAK = r"[ \t]*\n[ \t]*#?[ \t]*"
CITATION = re.compile(rf'\b(docs/[\w.-]+\.md|README\.md)(?:,[ \t]*|[ \t]+|,?{BREAK})"((?:[^"\n]|{BREAK})+)"')
BY_NUMBER = re.compile(r"\b([\w./-]+\.md|README),?[ \t]*(?:\n[ \t]*#?[ \t]*)?sections?[ \t]+\d", re.IGNORECASE)
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$")
NUMBER = re.compile(r"^\d+(?:\.\d+)*\.?[ \t]+")
CODE_POINTER = re.compile(r"[ \t]*\([^()]*`[^()]*\)")


def project_files() -> list[Path]:
    """Every project .py file and conf/**/*.yaml, hidden folders and run outputs aside (and this file, whose
    examples are not citations)."""
    files = sorted(REPO.glob("*.py")) + sorted((REPO / "conf").rglob("*.yaml"))
    for top in sorted(REPO.iterdir()):
        if top.is_dir() and not top.name.startswith(".") and top.name not in SKIP_DIRS | {"conf"} \
                and not top.name.endswith(".egg-info"):
            files += sorted(p for p in top.rglob("*.py") if "__pycache__" not in p.parts)
    return [p for p in files if p != Path(__file__).resolve()]


def citations(text: str) -> list[tuple[int, str, str]]:
    """(line, cited file, cited heading) of every citation in `text`."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1), re.sub(BREAK, " ", m.group(2)))
            for m in CITATION.finditer(text)]


def headings(markdown: str) -> set[str]:
    """Each heading's text without its leading number, and that text without parenthesised code pointers."""
    found, fenced = set(), False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            text = NUMBER.sub("", match.group(1))
            found |= {text, CODE_POINTER.sub("", text)}
    return found


@cache
def doc_headings(doc: str) -> set[str] | None:
    path = REPO / doc
    return headings(path.read_text(encoding="utf-8")) if path.is_file() else None


def test_the_scanner_reads_both_forms_and_headings_without_numbers():
    text = ('x = 1  # (docs/method.md, "Margin heads")\n# see docs/evaluation.md\n# "Averages", and README.md "Lay\n'
            '# out"; "README.md", "not cited"\n')
    assert citations(text) == [(1, "docs/method.md", "Margin heads"), (2, "docs/evaluation.md", "Averages"),
                               (3, "README.md", "Lay out")]
    md = "# Title\n## 2. Margin heads (`losses/heads.py`)\n```\n# not a heading\n```\n### 2.1 AdaFace\n"
    assert headings(md) == {"Title", "Margin heads (`losses/heads.py`)", "Margin heads", "AdaFace"}
    assert BY_NUMBER.search("(docs/evaluation.md\n# section 8)") and not BY_NUMBER.search('docs/x.md, "Section 8"')


def test_every_cited_heading_exists():
    found, broken = 0, []
    for path in project_files():
        for line, doc, heading in citations(path.read_text(encoding="utf-8")):
            found += 1
            known = doc_headings(doc)
            if known is None or heading not in known:
                why = "no such file" if known is None else "no such heading"
                broken.append(f"{path.relative_to(REPO)}:{line}: {doc}, {heading!r} ({why})")
    assert found > 0  # the scanner sees the citations the code makes
    assert broken == [], "\n".join(broken)


def test_no_comment_cites_a_section_number():
    by_number = []
    for path in project_files():
        text = path.read_text(encoding="utf-8")
        by_number += [f"{path.relative_to(REPO)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
                      for m in BY_NUMBER.finditer(text)]
    assert by_number == [], "\n".join(by_number)
