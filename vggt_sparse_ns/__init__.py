"""vggt-sparse-ns: VGGT with sparse global attention as a nerfstudio data-processing step.

Kept free of heavy imports: nerfstudio loads plugin entry points at start-up.
"""

__version__ = "0.1.0"
