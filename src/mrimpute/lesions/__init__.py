"""Lesion code in one place: which file is a subject's mask and how it is binarised (masks), how a mask is
brought onto another grid (transfer), and what is measured of drawn lesions (measures)."""
