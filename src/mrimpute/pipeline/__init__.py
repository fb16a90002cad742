"""The jobs, one module per command (or per part of one); they share the runtime, report progress through a
Reporter and never print."""
