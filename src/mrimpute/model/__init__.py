"""The network (torch only: no file formats, no CLI)."""
