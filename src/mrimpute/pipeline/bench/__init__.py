"""`mrimpute bench`, a developers' job: synthesis and training speed and memory on this machine beside the eager
reference. Nothing else in the package imports it (tests/test_architecture.py guards that)."""
