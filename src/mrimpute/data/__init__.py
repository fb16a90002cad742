"""Subjects on disk, intensity normalisation, and 2D slice sampling."""
