"""Fused GPU kernels (Triton), each with its plain-PyTorch reference in the calling module."""
