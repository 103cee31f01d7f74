"""`patrol bulk register FILE`: register many devices and tags from a CSV, in chunks.

The file has the columns of ``POST /api/v1/sites/{site_id}/provisioning/csv``
(``kind,id,label,checkpoint_id,keys``; see :mod:`cloud_api.provisioning_csv`). The
command uploads it in chunks of ``--chunk`` rows (the header repeated in each),
shows a Rich progress bar, and appends every created row's secrets to ``--out``
(JSON lines, created with mode 0600) as soon as its chunk's answer arrives, so an
interrupted run keeps what it got. Secrets are never printed; the terminal shows
a per-row table of errors and the totals.

If a chunk's answer is lost (network error), re-running the same file reports the
rows already created as ``already exists``: their secrets were only in the lost
answer, so rotate those devices (``POST /api/v1/devices/{kind}/{id}/rotate``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

API_PREFIX = "/api/v1"
DEFAULT_CHUNK = 200
MAX_CHUNK = 1000
"""The server takes at most 1,000 rows per request."""
HTTP_TIMEOUT_S = 120.0

app = typer.Typer(help="Bulk operations against the cloud service.", no_args_is_help=True)


class BulkError(Exception):
    """The file or the server refused the whole upload; the message says why."""


@dataclass
class Totals:
    created: int = 0
    errors: int = 0


def _csv_line(row: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(row)
    return out.getvalue()


def read_chunks(path: Path, chunk: int) -> tuple[str, list[list[str]]]:
    """The header line and the data lines of ``path`` (blank lines dropped) in chunks."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if not rows:
        raise BulkError(f"{path} is empty: the first line must name the columns")
    lines = [_csv_line(row) for row in rows[1:]]
    return _csv_line(rows[0]), [lines[i : i + chunk] for i in range(0, len(lines), chunk)]


def _open_secrets(path: Path) -> Any:
    """Append-only, owner-only (0600) file for the secrets."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.chmod(path, 0o600)
    return os.fdopen(fd, "a", encoding="utf-8")


def upload(
    *,
    url: str,
    token: str,
    site_id: int,
    path: Path,
    out: Path,
    chunk: int,
    console: Console,
    client: httpx.Client | None = None,
) -> Totals:
    """Upload ``path`` in chunks; returns the totals. Raises BulkError for a refused file."""
    if not 1 <= chunk <= MAX_CHUNK:
        raise BulkError(f"--chunk must be 1..{MAX_CHUNK}")
    header, chunks = read_chunks(path, chunk)
    total_rows = sum(len(c) for c in chunks)
    endpoint = f"{url.rstrip('/')}{API_PREFIX}/sites/{site_id}/provisioning/csv"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/csv"}
    totals = Totals()
    errors = Table("file line", "kind", "id", "error", title="rows not registered")
    own_client = client is None
    http = client if client is not None else httpx.Client(timeout=HTTP_TIMEOUT_S)
    try:
        with (
            _open_secrets(out) as secrets_file,
            Progress(
                TextColumn("[bold]registering"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as progress,
        ):
            task = progress.add_task("rows", total=total_rows)
            offset = 0
            for rows in chunks:
                response = http.post(endpoint, content=header + "".join(rows), headers=headers)
                if response.status_code != 200:
                    raise BulkError(_problem_text(response))
                body = response.json()
                for row in body["rows"]:
                    file_line = row["line"] + offset  # the server counts its chunk's lines
                    if row["status"] == "created":
                        totals.created += 1
                        record = {"kind": row["kind"], "id": row["id"], "site_id": site_id}
                        secrets_file.write(json.dumps(record | row["secrets"]) + "\n")
                    else:
                        totals.errors += 1
                        errors.add_row(str(file_line), row["kind"], row["id"], row["error"])
                secrets_file.flush()
                offset += len(rows)
                progress.advance(task, len(rows))
    finally:
        if own_client:
            http.close()
    if totals.errors:
        console.print(errors)
    console.print(
        f"created {totals.created}, errors {totals.errors}; secrets appended to {out} (mode 0600)"
    )
    return totals


def _problem_text(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    return f"the server refused the upload: HTTP {response.status_code}: {detail}"


@app.command("register")
def register(
    path: Annotated[
        Path, typer.Argument(help="CSV with columns kind,id,label,checkpoint_id,keys.")
    ],
    site_id: Annotated[int, typer.Option(help="The site the devices belong to.")],
    out: Annotated[
        Path, typer.Option(help="JSON-lines file the secrets are appended to (mode 0600).")
    ],
    url: Annotated[
        str, typer.Option(help="Base URL of the cloud service.", envvar="PATROL_CLOUD_URL")
    ] = "http://127.0.0.1:8000",
    token: Annotated[
        str,
        typer.Option(
            help="A technician's access token (or the admin token).",
            envvar="PATROL_API_TOKEN",
            show_default=False,
        ),
    ] = "",
    chunk: Annotated[int, typer.Option(help="Rows per request (1..1000).")] = DEFAULT_CHUNK,
) -> None:
    """Register every row of a CSV at a site; exit 1 if any row or the upload failed."""
    console = Console(stderr=True)
    if not token:
        console.print("no token: pass --token or set PATROL_API_TOKEN")
        raise typer.Exit(2)
    try:
        totals = upload(
            url=url, token=token, site_id=site_id, path=path, out=out, chunk=chunk, console=console
        )
    except (BulkError, OSError, httpx.HTTPError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    raise typer.Exit(1 if totals.errors else 0)
