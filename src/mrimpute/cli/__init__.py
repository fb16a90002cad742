"""The command-line interface: the only place that knows typer and rich."""
