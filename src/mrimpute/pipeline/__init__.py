"""The jobs behind each command; they report progress through a Reporter and never print."""
