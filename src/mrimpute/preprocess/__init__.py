"""Spatial preprocessing of a subject's scans: rigid/affine registration onto a reference scan, resampling,
N4 bias-field correction and a foreground (head) mask. Built on SimpleITK; knows nothing of files or the CLI."""
