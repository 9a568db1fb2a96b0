"""The COLMAP model: COLMAP's binary format, read back by nerfstudio's reader and converter."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from nerfstudio.data.utils.colmap_parsing_utils import (
    qvec2rotmat,
    read_cameras_binary,
    read_images_binary,
    read_points3D_binary,
)
from synthetic_scene import random_rotation

from vggt_sparse_ns.export.colmap import rotation_to_quaternion, write_colmap
from vggt_sparse_ns.export.geometry import common_intrinsic, project, to_nerfstudio_world
from vggt_sparse_ns.export.nerfstudio import transforms_dict


def _scene(frames: int, points_per_frame: int, seed: int = 0, shared: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    poses = np.stack([np.c_[random_rotation(rng), rng.normal(size=3)] for _ in range(frames)])
    sizes = [(640, 480) if shared or i % 2 else (480, 640) for i in range(frames)]
    intrinsics = np.stack(
        [[[500.0 + (0 if shared else i), 0, w / 2], [0, 505.0, h / 2], [0, 0, 1]] for i, (w, h) in enumerate(sizes)]
    )
    frame = np.repeat(np.arange(frames), points_per_frame)
    pixel = rng.uniform(0, 480, (len(frame), 2))
    rays = np.einsum("nij,nj->ni", np.linalg.inv(intrinsics)[frame], np.c_[pixel, np.ones(len(frame))])
    camera_points = rays * rng.uniform(1, 4, (len(frame), 1)) - poses[frame, :, 3]
    xyz = np.einsum("nji,nj->ni", poses[frame, :, :3], camera_points)
    pixel[::7] += 0.25  # some observations off by a known amount: the error must say so
    order = rng.permutation(len(frame))  # points arrive in any frame order
    return {
        "T_camera_world": poses,
        "intrinsics": intrinsics,
        "sizes": sizes,
        "names": [f"frame_{i + 1:05d}.png" for i in range(frames)],
        "xyz": xyz[order],
        "rgb": rng.integers(0, 256, (len(frame), 3), dtype=np.uint8),
        "frame": frame[order],
        "pixel": pixel[order],
        "shared": common_intrinsic(intrinsics, sizes),
    }


def _write(folder: Path, scene: dict) -> Path:
    return write_colmap(
        folder,
        scene["T_camera_world"],
        scene["intrinsics"],
        sizes=scene["sizes"],
        image_names=scene["names"],
        shared_intrinsic=scene["shared"],
        xyz=scene["xyz"],
        rgb=scene["rgb"],
        frame=scene["frame"],
        pixel=scene["pixel"],
    )


def test_quaternions_are_colmaps_scalar_first_convention_for_any_rotation() -> None:
    rng = np.random.default_rng(1)
    half_turns = [np.diag(d) for d in ([1.0, -1, -1], [-1.0, 1, -1], [-1.0, -1, 1])]
    for rotation in [np.eye(3), *half_turns, *(random_rotation(rng) for _ in range(50))]:
        quaternion = rotation_to_quaternion(rotation)
        assert quaternion[0] >= 0 and np.isclose(np.linalg.norm(quaternion), 1)
        np.testing.assert_allclose(qvec2rotmat(quaternion), rotation, atol=1e-12)


@pytest.mark.parametrize("shared", [False, True])
def test_nerfstudio_reads_back_cameras_poses_and_points(tmp_path: Path, shared: bool) -> None:
    scene = _scene(frames=4, points_per_frame=30, shared=shared)
    sparse = _write(tmp_path / "sparse" / "0", scene)
    cameras = read_cameras_binary(sparse / "cameras.bin")
    images = read_images_binary(sparse / "images.bin")
    points = read_points3D_binary(sparse / "points3D.bin")
    assert len(cameras) == (1 if shared else 4) and len(images) == 4 and len(points) == 120
    for index in range(4):
        image = images[index + 1]
        camera = cameras[image.camera_id]
        k = scene["intrinsics"][index]
        assert image.name == scene["names"][index] and camera.model == "PINHOLE"
        assert (camera.width, camera.height) == scene["sizes"][index]
        np.testing.assert_allclose(camera.params, [k[0, 0], k[1, 1], k[0, 2], k[1, 2]])
        np.testing.assert_allclose(qvec2rotmat(image.qvec), scene["T_camera_world"][index, :, :3], atol=1e-12)
        np.testing.assert_allclose(image.tvec, scene["T_camera_world"][index, :, 3])
        for xy, point_id in zip(image.xys, image.point3D_ids, strict=True):
            point = points[point_id]
            np.testing.assert_allclose(xy, scene["pixel"][point_id - 1])
            assert list(point.image_ids) == [index + 1]
            np.testing.assert_allclose(image.xys[point.point2D_idxs[0]], xy)
    for point_id, point in points.items():
        np.testing.assert_allclose(point.xyz, scene["xyz"][point_id - 1])
        np.testing.assert_array_equal(point.rgb, scene["rgb"][point_id - 1])
        frame = scene["frame"][point_id - 1]
        projected, _ = project(point.xyz[None], scene["intrinsics"][frame], scene["T_camera_world"][frame])
        np.testing.assert_allclose(point.error, np.linalg.norm(projected[0] - scene["pixel"][point_id - 1]), atol=1e-9)
    errors = np.array([point.error for point in points.values()])
    assert np.isclose(errors.max(), 0.25 * np.sqrt(2)) and np.median(errors) < 1e-9


@pytest.mark.parametrize("shared", [False, True])
def test_nerfstudio_colmap_converter_gives_our_transforms_json(tmp_path: Path, shared: bool) -> None:
    import open3d as o3d
    from nerfstudio.process_data.colmap_utils import colmap_to_json

    scene = _scene(frames=3, points_per_frame=10, seed=2, shared=shared)
    sparse = _write(tmp_path / "colmap" / "sparse" / "0", scene)
    colmap_to_json(sparse, tmp_path)
    theirs = json.loads((tmp_path / "transforms.json").read_text())
    ours = transforms_dict(
        scene["T_camera_world"], scene["intrinsics"], scene["sizes"], [f"images/{n}" for n in scene["names"]], None
    )
    np.testing.assert_allclose(theirs["applied_transform"], ours["applied_transform"])
    assert ("fl_x" in theirs) == ("fl_x" in ours) == shared
    their_frames = {frame["file_path"]: frame for frame in theirs["frames"]}
    for frame in ours["frames"]:
        their_frame = their_frames[frame["file_path"]]
        np.testing.assert_allclose(their_frame["transform_matrix"], frame["transform_matrix"], atol=1e-12)
        for key in ("fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "p1", "p2"):
            # a value holds for a frame when the frame or, failing that, the top level has it
            assert their_frame.get(key, theirs.get(key)) == pytest.approx(frame.get(key, ours.get(key)))
    their_xyz = np.asarray(o3d.io.read_point_cloud(str(tmp_path / "sparse_pc.ply")).points)
    ours_xyz = to_nerfstudio_world(scene["xyz"]).astype(np.float32)
    np.testing.assert_allclose(np.sort(their_xyz, axis=0), np.sort(ours_xyz, axis=0), atol=1e-5)


def test_thousands_of_frames_write_in_linear_time(tmp_path: Path) -> None:
    scene = _scene(frames=3000, points_per_frame=20, seed=3)
    started = time.perf_counter()
    _write(tmp_path / "sparse" / "0", scene)
    elapsed = time.perf_counter() - started
    assert len(read_images_binary(tmp_path / "sparse" / "0" / "images.bin")) == 3000
    assert elapsed < 10, f"writing 3000 frames took {elapsed:.1f} s"


@pytest.mark.parametrize("shared", [False, True])
def test_pycolmap_loads_the_model_with_the_cameras_and_poses_of_our_transforms_json(
    tmp_path: Path, shared: bool
) -> None:
    import pycolmap

    scene = _scene(frames=5, points_per_frame=8, seed=4, shared=shared)
    model = pycolmap.Reconstruction(_write(tmp_path / "colmap" / "sparse" / "0", scene))
    transforms = transforms_dict(
        scene["T_camera_world"], scene["intrinsics"], scene["sizes"], [f"images/{n}" for n in scene["names"]], None
    )
    assert (model.num_images(), model.num_cameras(), model.num_points3D()) == (5, 1 if shared else 5, 40)
    assert all(len(point.track.elements) == 1 for point in model.points3D.values())
    # docs/conventions.md: transform_matrix = applied_transform · T_world_camera · diag(1, -1, -1, 1)
    T_nerfstudio_colmap = np.vstack([transforms["applied_transform"], [0, 0, 0, 1]])
    images = {image.name: image for image in model.images.values()}
    for frame in transforms["frames"]:
        image = images[Path(frame["file_path"]).name]
        camera = model.cameras[image.camera_id]
        T_world_camera = np.linalg.inv(T_nerfstudio_colmap) @ frame["transform_matrix"] @ np.diag([1.0, -1, -1, 1])
        np.testing.assert_allclose(image.cam_from_world().inverse().matrix(), T_world_camera[:3], atol=1e-12)
        assert camera.model_name == "PINHOLE"
        assert (camera.width, camera.height) == (
            frame.get("w", transforms.get("w")),
            frame.get("h", transforms.get("h")),
        )
        intrinsics = [frame.get(key, transforms.get(key)) for key in ("fl_x", "fl_y", "cx", "cy")]
        np.testing.assert_allclose(camera.params, intrinsics, rtol=1e-12)
