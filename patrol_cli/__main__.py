"""`python -m patrol_cli` runs the `patrol` command."""

from patrol_cli.main import app

app()
