"""Options several commands share, declared once (typer's Annotated style: `device: Device = "auto"`).

The default stays where the command declares the option; only the type, the flags and the help text live here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

Model = Annotated[Optional[Path], typer.Option(help="Model checkpoint (default: the shipped model).")]
Device = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
Threads = Annotated[int, typer.Option(min=0, help="CPU threads (0: torch's default).")]
SliceBatch = Annotated[int, typer.Option("--batch-size", min=0,
                                         help="Slices per forward pass (0: chosen from the slice size).")]
Force = Annotated[bool, typer.Option(help="Overwrite existing outputs.")]
