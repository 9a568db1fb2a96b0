"""The stages of one ``ns-process-data vggt-sparse`` run, shared by the tests that time them and interrupt them."""

STAGES = [
    "probe images",
    "load model",
    "load images",
    "inference",
    "finish writing images",
    "point cloud",
    "write ply",
    "depth maps",
    "colmap model",
    "transforms.json",
]
"""Every stage of a run with depth maps and a COLMAP model, in order, up to the swap ("move into place")."""
