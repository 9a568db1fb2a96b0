"""VGGT's pose encoding to camera matrices.

pose_enc [..., 9] = translation (3), quaternion xyzw (4), fov_h, fov_w. It encodes the
camera-from-world transform ``T_camera_world`` in OpenCV camera axes (x right, y down,
z forward); the world frame is frame 0's camera.
"""

from __future__ import annotations

import torch
from torch import Tensor


def quaternion_to_matrix(quat_xyzw: Tensor) -> Tensor:
    """Rotation matrices [..., 3, 3] from (not necessarily unit) quaternions [..., 4] in xyzw order."""
    x, y, z, w = quat_xyzw.unbind(-1)
    s = 2.0 / (quat_xyzw * quat_xyzw).sum(-1)
    rows = (
        1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
        s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
        s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
    )  # fmt: skip
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


def pose_encoding_to_cameras(pose_enc: Tensor, image_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """(T_camera_world [..., 3, 4], K [..., 3, 3]) for images of size image_hw, principal point at the centre."""
    height, width = image_hw
    rotation = quaternion_to_matrix(pose_enc[..., 3:7])
    extrinsic = torch.cat((rotation, pose_enc[..., :3, None]), dim=-1)
    intrinsic = torch.zeros(*pose_enc.shape[:-1], 3, 3, dtype=pose_enc.dtype, device=pose_enc.device)
    intrinsic[..., 0, 0] = (width / 2) / torch.tan(pose_enc[..., 8] / 2)
    intrinsic[..., 1, 1] = (height / 2) / torch.tan(pose_enc[..., 7] / 2)
    intrinsic[..., 0, 2] = width / 2
    intrinsic[..., 1, 2] = height / 2
    intrinsic[..., 2, 2] = 1.0
    return extrinsic, intrinsic
