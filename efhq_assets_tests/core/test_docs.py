"""The repository stands on its own: every document a file cites is in it, and the architecture document's
table list is the code's, column for column."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# A document name: path segments ending in `.md`, not part of a longer name, an attribute (`dg.MetadataValue.md`)
# or a URL (anything after a `/` that is not the start of the path).
CITATION = re.compile(r"(?<![\w./-])((?:[\w-]+/)*[A-Za-z][\w-]*\.md)\b(?!\()")
# Documents the product writes into a data root (not the repository): `efhq_assets/core/card.py`.
GENERATED = {"dataset_card.md"}


def _repo_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return [p for p in out.splitlines() if (REPO / p).is_file()]


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def cited_documents(text: str) -> list[str]:
    return CITATION.findall(text)


def missing_citations(root: Path, files: list[str]) -> list[str]:
    names = {Path(p).name for p in files if p.endswith(".md")}
    missing = []
    for rel in files:
        text = _text(root / rel)
        if text is None:
            continue
        for doc in cited_documents(text):
            if Path(doc).name in GENERATED:
                continue
            found = ((root / doc).is_file() or (root / rel).parent.joinpath(doc).is_file()) if "/" in doc \
                else doc in names
            if not found:
                missing.append(f"{rel}: {doc}")
    return sorted(set(missing))


def test_the_citation_pattern_finds_documents_and_nothing_else():
    text = ("see docs/scale.md and README.md; (efhq.md) `docs/a-b_c.md`. Not dg.MetadataValue.md(x), "
            "not https://github.com/o/r/blob/main/README.md, not x.mdx")
    assert cited_documents(text) == ["docs/scale.md", "README.md", "efhq.md", "docs/a-b_c.md"]


def test_every_cited_document_is_in_the_repository():
    files = _repo_files()
    assert "docs/architecture.md" in files and "docs/efhq.md" in files
    this = str(Path(__file__).resolve().relative_to(REPO))  # its examples cite missing documents on purpose
    assert missing_citations(REPO, [f for f in files if f != this]) == []


def test_a_citation_of_a_missing_document_is_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "here.md").write_text("see [there](there.md) and ../README.md\n")
    (tmp_path / "README.md").write_text("x")
    (tmp_path / "a.py").write_text("see docs/not_here.md and NOT_HERE.md; docs/here.md and here.md exist\n")
    files = ["README.md", "a.py", "docs/here.md"]
    assert missing_citations(tmp_path, files) == ["a.py: NOT_HERE.md", "a.py: docs/not_here.md",
                                                  "docs/here.md: there.md"]


def _documented_tables() -> dict[str, tuple[str, ...]]:
    text = (REPO / "docs" / "architecture.md").read_text()
    section = text.split("\n## Tables\n", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"`\w+`", cells[0]):
            out[cells[0].strip("`")] = tuple(re.findall(r"`(\w+)`", cells[2]))
    return out


def _code_tables() -> dict[str, tuple[str, ...]]:
    from efhq_assets.core.schemas import TABLE_SCHEMAS
    from efhq_assets.core.tasks.eg3d import SPLIT_EG3D_COLUMNS
    from efhq_assets.core.tasks.gan import SPLIT_GAN_COLUMNS
    from efhq_assets.core.tasks.metrics import VERIFICATION_REPORT_COLUMNS
    from efhq_assets.core.tasks.reenactment import SPLIT_REENACTMENT_COLUMNS
    from efhq_assets.core.tasks.t2i import SPLIT_T2I_COLUMNS
    from efhq_assets.core.tasks.verification import VERIFICATION_PAIRS_COLUMNS

    return {**{t: tuple(cols) for t, cols in TABLE_SCHEMAS.items()},
            "split_gan": SPLIT_GAN_COLUMNS, "split_eg3d": SPLIT_EG3D_COLUMNS, "split_t2i": SPLIT_T2I_COLUMNS,
            "split_reenactment": SPLIT_REENACTMENT_COLUMNS, "verification_pairs": VERIFICATION_PAIRS_COLUMNS,
            "verification_report": VERIFICATION_REPORT_COLUMNS}


def test_architecture_document_lists_every_table_with_its_exact_columns():
    documented, code = _documented_tables(), _code_tables()
    assert set(documented) == set(code)
    for table, columns in code.items():
        assert documented[table] == tuple(columns), table
