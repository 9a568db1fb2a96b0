"""GPU kernels (Triton and Gluon programs), each an implementation of an operation whose plain-PyTorch
implementation stays beside the operation's other implementations (see layers/implementations.py)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor, nn

HALF_PRECISION = (torch.bfloat16, torch.float16)


@functools.cache
def triton_installed() -> bool:
    """Whether Triton can be imported (it is optional: CPU and MPS run without it)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def gluon_installed() -> bool:
    """Whether Triton 3.6 or newer with Gluon's Hopper language is installed (warp specialisation)."""
    try:
        import triton
        from triton.experimental.gluon.language.nvidia.hopper import warpgroup_mma  # noqa: F401
    except ImportError:
        return False
    return tuple(int(part) for part in triton.__version__.split(".")[:2]) >= (3, 6)


@dataclass(frozen=True)
class DeviceCapabilities:
    """What a device offers the kernels. Taken from a tensor's device by ``of``; tests pass made-up ones
    to check which implementation each device gets, and why the others refuse."""

    type: str
    """torch device type: cuda, mps, cpu."""
    compute_capability: tuple[int, int] | None = None
    """CUDA compute capability (9, 0 on Hopper); None off CUDA."""
    triton: bool = False
    """Triton is installed."""
    gluon: bool = False
    """Triton 3.6+ with Gluon is installed."""

    @classmethod
    def of(cls, device: torch.device) -> DeviceCapabilities:
        """The capabilities of ``device`` (asked once per device: the norms ask at every block)."""
        return _capabilities_of(device)


@functools.cache
def _capabilities_of(device: torch.device) -> DeviceCapabilities:
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    return DeviceCapabilities(device.type, capability, triton_installed(), gluon_installed())


def triton_reasons(capabilities: DeviceCapabilities, dtype: torch.dtype) -> list[str]:
    """Why a Triton kernel of this package cannot run on this device and dtype (it runs on CUDA in half
    precision with Triton installed)."""
    reasons = []
    if capabilities.type != "cuda":
        reasons.append(f"it runs on CUDA devices, not {capabilities.type}")
    if dtype not in HALF_PRECISION:
        reasons.append(f"it takes bfloat16 or float16, not {dtype}")
    if not capabilities.triton:
        reasons.append("Triton is not installed")
    return reasons


def gradient_reasons(x: Tensor, *modules: nn.Module) -> list[str]:
    """Why a kernel without backward cannot replace plain work on x with the ``modules``' parameters: a
    gradient is wanted (grad mode on and x or a parameter requires grad)."""
    wants_gradients = torch.is_grad_enabled() and (
        x.requires_grad or any(parameter.requires_grad for module in modules for parameter in module.parameters())
    )
    return ["it has no backward and a gradient is wanted"] if wants_gradients else []
