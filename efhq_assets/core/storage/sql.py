"""Read-only SQL on the manifest: one read statement, external access off (`efhq sql`)."""

from __future__ import annotations

import re

from .compaction import view_directories
from .layout import DataRoot


READ_STATEMENTS = {"SELECT", "EXPLAIN"}
READ_KEYWORDS = ("select", "with", "describe", "show", "explain", "summarize", "from", "values", "table", "(")


class ReadOnlyQueryError(ValueError):
    """A statement that is not a read (or could touch files outside the manifest)."""


class NoManifestError(FileNotFoundError):
    pass


def _strip_sql_comments(sql: str) -> str:
    sql = re.sub(r"/\*.*?\*/", " ", sql, flags=re.S)
    return re.sub(r"--[^\n]*", " ", sql)


def check_read_only(sql: str) -> None:
    """Accept only read statements; the engine settings are the second line of defence."""
    import duckdb

    text = _strip_sql_comments(sql).strip()
    if not text:
        raise ReadOnlyQueryError("empty query")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ReadOnlyQueryError(f"could not parse the query: {exc}") from None
    if len(statements) != 1:
        raise ReadOnlyQueryError("exactly one statement per query, please")
    kind = statements[0].type.name
    first = text.split(None, 1)[0].lower()
    if kind not in READ_STATEMENTS or not first.startswith(READ_KEYWORDS):
        raise ReadOnlyQueryError(
            f"refused: `efhq sql` only runs read statements (SELECT, WITH, DESCRIBE, SHOW, EXPLAIN, SUMMARIZE); "
            f"got a {kind} statement. The manifest is rebuilt from tables/ by `efhq build`; nothing was changed.")


def connect_read_only(root: DataRoot):
    import duckdb

    if not root.manifest_path.exists():
        raise NoManifestError(f"no manifest at {root.manifest_path}: run `efhq demo` or `efhq build` first")
    con = duckdb.connect(str(root.manifest_path), read_only=True)
    try:
        # The views' per-video files (compaction.VIEW_TABLES) are the only files a query may read; then external
        # access goes off and the configuration is locked, before any user SQL runs.
        con.execute("SET enable_progress_bar = false")  # it would print into `efhq sql`'s output (a query > 2 s)
        con.execute("SET allowed_directories = " + _sql_list(view_directories(root)))
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def _sql_list(values: list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def query(root: DataRoot, sql: str):
    """Run one read statement on the manifest; returns (column names, rows)."""
    check_read_only(sql)
    con = connect_read_only(root)
    try:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description] if cur.description else []
        return names, cur.fetchall()
    finally:
        con.close()
