"""Output helpers shared by the CLI's verb modules (exit codes, JSON line, rich tables)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2


def json_default(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)


def dump(obj: dict[str, Any]) -> str:
    """One JSON object on one line (non-finite floats as null): the CLI's ``--json`` last line."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in obj.items()}
    return json.dumps(clean, default=json_default, sort_keys=True)


def fail(message: str) -> int:
    """Print ``econ-ray: error: MESSAGE`` on stderr; return the bad-input exit code (2)."""
    print(f"econ-ray: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def out_file(value: str | None, default_dir: str, name: str) -> Path:
    """Where a verb that writes one file puts it: ``--out`` is a folder, as for every other verb (the
    file is ``name`` inside it), or a path ending in ``name``'s suffix (that file); default
    ``default_dir/name``."""
    if not value:
        return Path(default_dir) / name
    p = Path(value)
    return p if p.suffix == Path(name).suffix else p / name


def fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))


def print_rows(title: str, rows: list[dict[str, Any]], cols: list[str]) -> None:
    """A rich table of ``rows`` restricted to ``cols`` on stdout."""
    from rich.table import Table

    table = Table(title=title)
    for c in cols:
        table.add_column(c, no_wrap=True)
    for r in rows:
        table.add_row(*[fmt(r.get(c)) for c in cols])
    print_table(table)


def wide_console(table: Any) -> Any:
    """A stdout console never narrower than ``table``'s own width: a squeezed column cuts its header (a
    name and its unit)."""
    from rich.console import Console

    natural = Console(width=10_000).measure(table).maximum
    return Console(file=sys.stdout, soft_wrap=True, width=max(Console().width, natural))


def print_table(table: Any, *lines: str) -> None:
    """A rich table (then ``lines``) on stdout at its full width (:func:`wide_console`)."""
    console = wide_console(table)
    console.print(table)
    for line in lines:
        console.print(line)


def print_fields(title: str, row: dict[str, Any], keys: list[str]) -> None:
    """One record as a two-column table (field, value) on stdout; fields that are None are left out."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    for k in keys:
        if row.get(k) is not None:
            table.add_row(k, fmt(row[k]))
    Console(file=sys.stdout, soft_wrap=True).print(table)
