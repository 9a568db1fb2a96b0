"""Defaults that more than one layer names (the model, the frame graph, the command line): defined here once.
Nothing is imported, so the command line and the plugins read them at start-up without loading torch."""

DEFAULT_CHECKPOINT = "facebook/VGGT-1B"
"""The VGGT weights used unless others are given: a Hugging Face hub id (non-commercial licence)."""
DEFAULT_MEGALOC_CHECKPOINT = "gberton/MegaLoc"
"""The MegaLoc weights used for MegaLoc descriptors unless others are given: a Hugging Face hub id (MIT licence)."""
DEFAULT_NEIGHBORS = 16
"""k of the frame graph: each frame's k most similar frames become its neighbours (covisibility attention)."""
