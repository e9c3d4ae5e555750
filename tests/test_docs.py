"""The project's notes are reachable: every citation of ``docs/theory.md`` / ``docs/official.md`` names a
heading that exists (``§N``, ``§N.M``, ``TN``, ``AN``), nothing links outside the repository or cites
the notes by a bare file name, and every relative Markdown link points at a file (and heading) that exists.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = {"theory": ROOT / "docs" / "theory.md", "official": ROOT / "docs" / "official.md"}
SELF = Path(__file__).resolve()
#: one cited section: "§4", "§5.3", "T11", "A2"
REF = r"(?:§\d+(?:\.\d+)*|\b[TA]\d+\b)"
#: "docs/theory.md T5, §5.3", "docs/official.md §1-§2", "docs/theory.md A1, A3 and T8"
CITE = re.compile(rf"docs/(theory|official)\.md((?:(?:\s|,|;|-|–|/|\band\b)*{REF})*)")
HEADING = re.compile(r"^#{2,6}\s+(\d+(?:\.\d+)*|[TA]\d+)(?=[.:\s])", re.M)
#: the notes' names without the docs/ prefix (the sibling links inside docs/ are fine, see below)
BARE = re.compile(r"(?<![\w/])(theory|official|reference)\.md", re.I)
OUTSIDE = re.compile(r"\.\./shared|/work/shared")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".cfg", ".ini", ".txt", ".yml", ".yaml", ".sh", ".json"}
SKIP_DIRS = {".git", ".venv", "build", "dist", "psld-verify", "figures-out", "__pycache__"}


def repo_files() -> list[Path]:
    """Tracked and untracked-but-not-ignored files (``git ls-files``), or a walk outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        files = [ROOT / f for f in out if f]
    except (OSError, subprocess.CalledProcessError):
        files = [p for p in ROOT.rglob("*") if not SKIP_DIRS & set(p.relative_to(ROOT).parts)]
    return [p for p in files if p.is_file() and p.resolve() != SELF]


def text_files() -> dict[Path, str]:
    keep = [p for p in repo_files() if p.suffix in TEXT_SUFFIXES or p.name in ("Makefile", "run")]
    return {p: p.read_text(encoding="utf-8", errors="replace") for p in keep}


def slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    title = re.sub(r"[`*_]", "", title.strip()).lower()
    return re.sub(r"[^\w\- ]", "", title).replace(" ", "-")


def headings(text: str) -> list[str]:
    """Section labels of a notes file: ``§N``/``§N.M`` for numbered headings, ``TN``/``AN`` as written."""
    return [m if m[0] in "TA" else "§" + m for m in HEADING.findall(text)]


def anchors(text: str) -> set[str]:
    return {slug(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


def citations(text: str) -> list[tuple[str, str]]:
    """``(doc, section)`` for every section cited in ``text``."""
    return [(m[1], ref) for m in CITE.finditer(text) for ref in re.findall(REF, m[2])]


def citation_errors(files: dict[Path, str], sections: dict[str, set[str]]) -> list[str]:
    """Citations whose section is not a heading of the cited file."""
    errors = []
    for path, text in files.items():
        for doc, ref in citations(text):
            if ref not in sections[doc]:
                errors.append(
                    f"{path.relative_to(ROOT)}: docs/{doc}.md {ref} is not a heading of docs/{doc}.md"
                )
    return errors


def link_errors(path: Path, text: str, known: set[Path]) -> list[str]:
    """Relative Markdown links in ``text`` (file ``path``) whose target is not one of the repository's own
    files ``known`` (a git-ignored, generated file does not count), or whose heading does not exist."""
    errors = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        rel = path.relative_to(ROOT)
        if not str(dest).startswith(str(ROOT)):
            errors.append(f"{rel}: link {target} leaves the repository")
        elif dest not in known and not any(dest in k.parents for k in known):
            errors.append(f"{rel}: link {target} points at no file of the repository")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
            errors.append(f"{rel}: link {target} names no heading of {dest.name}")
    return errors


@pytest.fixture(scope="module")
def sections() -> dict[str, set[str]]:
    return {doc: set(headings(path.read_text(encoding="utf-8"))) for doc, path in DOCS.items()}


@pytest.fixture(scope="module")
def files() -> dict[Path, str]:
    return text_files()


def test_notes_have_unique_numbered_headings():
    for doc, path in DOCS.items():
        found = headings(path.read_text(encoding="utf-8"))
        assert len(found) >= 10, f"docs/{doc}.md has only {found}"
        assert len(found) == len(set(found)), f"docs/{doc}.md repeats a heading number: {found}"
    theory = set(headings(DOCS["theory"].read_text(encoding="utf-8")))
    assert {f"T{i}" for i in range(1, 14)} <= theory, "docs/theory.md must state T1-T13"


def test_every_citation_names_an_existing_section(files, sections):
    cited = [c for text in files.values() for c in citations(text)]
    assert len(cited) >= 50, f"expected the code to cite the notes, found only {len(cited)} citations"
    assert citation_errors(files, sections) == []


def test_a_wrong_citation_is_reported(sections):
    fake = {
        ROOT / "psld" / "fake.py": '"""See docs/theory.md T3, §42 and docs/official.md §2-§99, and A7."""',
        ROOT / "psld" / "fine.py": "# docs/theory.md A1, A3 and T8; docs/official.md §9",
    }
    errors = citation_errors(fake, sections)
    assert len(errors) == 3, errors
    assert "docs/theory.md §42" in errors[0] and "docs/official.md §99" in errors[1]
    assert "docs/official.md A7" in errors[2]  # a list continues until a word that is no section
    assert citations(fake[ROOT / "psld" / "fine.py"]) == [
        ("theory", "A1"),
        ("theory", "A3"),
        ("theory", "T8"),
        ("official", "§9"),
    ]


def test_no_bare_note_names_and_no_links_outside_the_repository(files):
    bad = []
    for path, text in files.items():
        rel = path.relative_to(ROOT)
        if OUTSIDE.search(text):
            bad.append(f"{rel}: refers to the shared folder outside the repository")
        for i, line in enumerate(text.splitlines(), 1):
            for m in BARE.finditer(line):
                sibling = (
                    rel.parts[0] == "docs" and m[1].lower() in DOCS and line[: m.start()].endswith(("(", "["))
                )
                if not sibling:
                    bad.append(f"{rel}:{i}: bare {m[0]!r} (cite docs/theory.md or docs/official.md)")
    assert bad == []


def test_markdown_links_resolve(files):
    known = {p.resolve() for p in repo_files()} | {SELF}
    md = {path: text for path, text in files.items() if path.suffix == ".md"}
    errors = [e for path, text in md.items() for e in link_errors(path, text, known)]
    assert errors == []


def test_a_broken_link_is_reported():
    # a link to the git-ignored generated report, one to a missing heading, and two good ones
    page = ROOT / "docs" / "page.md"
    text = (
        "[r](../psld-verify/report.md) [t](theory.md#no-such-heading) [ok](theory.md#2-notation) "
        "[img](img/stability_region.png)"
    )
    known = {p.resolve() for p in repo_files()}
    errors = link_errors(page, text, known)
    assert len(errors) == 2, errors
    assert "psld-verify/report.md" in errors[0] and "no-such-heading" in errors[1]
