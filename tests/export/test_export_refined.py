"""A refined reconstruction's exports: a true SfM model in colmap/sparse/0 (read back by pycolmap), the
refined intrinsics and distortion in transforms.json, the triangulated points in sparse_pc.ply."""

from __future__ import annotations

import json

import numpy as np
import pycolmap
import pytest
from refine.textured_scene import make_scene, perturb

from vggt_sparse_ns.export import ExportConfig, export_dataset
from vggt_sparse_ns.export.geometry import to_nerfstudio_world
from vggt_sparse_ns.export.ply import read_ply
from vggt_sparse_ns.refine import RefineConfig, refine

FRAMES = 5


@pytest.fixture(scope="module", params=["OPENCV"])
def exported(request, tmp_path_factory: pytest.TempPathFactory):
    output = tmp_path_factory.mktemp("dataset")
    scene = make_scene(output / "images", frames=FRAMES, blank_frame=FRAMES - 1)
    refined = refine(perturb(scene.truth, seed=4), RefineConfig(refine_camera_model=request.param))
    names = [f"images/{path.name}" for path in scene.truth.image_paths]
    summary = export_dataset(refined, output, names, ExportConfig(colmap=True, max_points=500))
    return refined, output, summary


def test_the_colmap_model_holds_every_track_and_observation(exported) -> None:
    refined, output, _ = exported
    sparse = refined.sparse_points
    model = pycolmap.Reconstruction(output / "colmap" / "sparse" / "0")
    assert model.num_images() == FRAMES and model.num_reg_images() == FRAMES
    assert model.num_points3D() == len(sparse.xyz) == refined.refinement["points"]
    assert model.compute_num_observations() == len(sparse.frame) == refined.refinement["observations"]
    lengths = np.bincount(sparse.point)
    for point_id, point in model.points3D.items():
        assert point.track.length() == lengths[point_id - 1]
        np.testing.assert_allclose(point.xyz, sparse.xyz[point_id - 1])
    assert model.image(FRAMES).num_points3D == 0  # the blank frame is kept and sees no point


def test_the_colmap_cameras_are_the_refined_model_and_reproject_its_points(exported) -> None:
    refined, output, _ = exported
    model = pycolmap.Reconstruction(output / "colmap" / "sparse" / "0")
    assert {camera.model.name for camera in model.cameras.values()} == {"OPENCV"}
    errors = []
    for image in model.images.values():
        for point2D in image.points2D:
            if point2D.has_point3D():
                xyz = model.point3D(point2D.point3D_id).xyz
                projected = image.camera.img_from_cam(image.cam_from_world() * xyz)
                errors.append(np.linalg.norm(projected - point2D.xy))
    assert np.mean(errors) == pytest.approx(refined.refinement["reprojection_error_px"], rel=1e-3)
    assert np.mean(errors) < 1.0


def test_transforms_json_carries_the_refined_intrinsics_and_distortion(exported) -> None:
    refined, output, _ = exported
    transforms = json.loads((output / "transforms.json").read_text())
    frames = transforms["frames"]
    for index, frame in enumerate(frames):
        fields = {**transforms, **frame}
        assert fields["fl_x"] == pytest.approx(refined.intrinsics[index, 0, 0], rel=1e-6)  # model = image pixels
        np.testing.assert_allclose(
            [fields[key] for key in ("k1", "k2", "p1", "p2")], refined.distortion[index], rtol=1e-6, atol=1e-12
        )
    assert transforms["camera_model"] == "OPENCV"


def test_the_point_cloud_ends_with_the_triangulated_points(exported) -> None:
    refined, output, summary = exported
    vertices = read_ply(output / "sparse_pc.ply")
    xyz = np.stack([vertices[axis] for axis in "xyz"], axis=1)
    tail = xyz[-len(refined.sparse_points) :]
    np.testing.assert_allclose(tail, to_nerfstudio_world(refined.sparse_points.xyz), rtol=1e-5, atol=1e-5)
    assert len(xyz) > len(refined.sparse_points)  # the depth cloud comes first
