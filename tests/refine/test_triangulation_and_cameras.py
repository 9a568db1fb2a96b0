"""Triangulation from known cameras, the camera models' parameters and lens distortion."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from textured_scene import look_at

from vggt_sparse_ns.camera_models import colmap_params, distort, from_colmap_params
from vggt_sparse_ns.refine import triangulation
from vggt_sparse_ns.refine.cameras import CameraSet, project_points, undistort
from vggt_sparse_ns.refine.triangulation import SparseModel, linear_triangulation, refine_points, triangulate

CPU = torch.device("cpu")


def _cameras(distortion: np.ndarray | None = None) -> CameraSet:
    eyes = [np.array([x, 0.0, 0.0]) for x in (-1.0, 0.0, 1.0, 2.0)]
    poses = np.stack([look_at(eye, np.array([0.5, 0.0, 5.0])) for eye in eyes])
    intrinsic = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    return CameraSet(poses, np.repeat(intrinsic[None], 4, 0), np.zeros((4, 4)) if distortion is None else distortion)


def _observe(cameras: CameraSet, points: np.ndarray) -> tuple[np.ndarray, ...]:
    track = np.repeat(np.arange(len(points)), 4)
    frame = np.tile(np.arange(4), len(points))
    pixel, _ = project_points(cameras, frame, points[track])
    return track, frame, np.arange(len(track)), pixel


def test_noise_free_observations_give_the_points_back() -> None:
    rng = np.random.default_rng(0)
    points = rng.uniform([-1, -1, 4], [2, 1, 6], (50, 3))
    distortion = np.tile([-0.1, 0.02, 0.001, -0.002], (4, 1))
    for cameras in (_cameras(), _cameras(distortion)):
        model = triangulate(cameras, *_observe(cameras, points), max_error=1.0, min_angle=1.0)
        assert len(model) == 50
        np.testing.assert_allclose(model.xyz, points, atol=1e-6)
        assert model.errors(cameras).max() < 1e-6


def test_an_observation_far_from_the_others_is_dropped_and_the_point_kept() -> None:
    cameras = _cameras()
    points = np.array([[0.5, 0.2, 5.0], [0.0, -0.3, 4.5]])
    track, frame, keypoint, pixel = _observe(cameras, points)
    pixel[1] += [40.0, -25.0]  # point 0 in frame 1: a wrong match
    model = triangulate(cameras, track, frame, keypoint, pixel, max_error=2.0, min_angle=1.0)
    assert len(model) == 2 and len(model.frame) == 7
    assert 1 not in model.keypoint.tolist()
    np.testing.assert_allclose(model.xyz, points, atol=1e-6)


def test_points_seen_under_too_small_an_angle_are_left_out() -> None:
    cameras = _cameras()
    far = np.array([[0.5, 0.0, 2000.0]])  # rays almost parallel
    model = triangulate(cameras, *_observe(cameras, far), max_error=1.0, min_angle=1.0)
    assert len(model) == 0


@pytest.mark.parametrize("model_name", ["PINHOLE", "SIMPLE_RADIAL", "OPENCV"])
def test_camera_parameters_go_to_colmap_and_back(model_name: str) -> None:
    intrinsic = np.array([[510.0, 0, 321], [0, 510.0 if model_name == "SIMPLE_RADIAL" else 498.0, 239], [0, 0, 1]])
    distortion = {"PINHOLE": [0, 0, 0, 0], "SIMPLE_RADIAL": [-0.05, 0, 0, 0], "OPENCV": [-0.05, 0.01, 1e-3, -2e-3]}
    k, d = from_colmap_params(model_name, colmap_params(model_name, intrinsic, np.array(distortion[model_name])))
    np.testing.assert_allclose(k, intrinsic)
    np.testing.assert_allclose(d, distortion[model_name])


def test_undistortion_inverts_distortion() -> None:
    rng = np.random.default_rng(3)
    normalised = rng.uniform(-0.6, 0.6, (100, 2))
    coefficients = np.tile([-0.2, 0.05, 1e-3, -1e-3], (100, 1))
    np.testing.assert_allclose(undistort(distort(normalised, coefficients), coefficients), normalised, atol=1e-9)


def test_gauss_newton_moves_perturbed_points_back_onto_their_rays() -> None:
    cameras = _cameras(np.tile([-0.1, 0.0, 0.0, 0.0], (4, 1)))
    points = np.random.default_rng(4).uniform([-1, -1, 4], [2, 1, 6], (20, 3))
    track, frame, keypoint, pixel = _observe(cameras, points)
    start = SparseModel(points + 0.05, track, frame, keypoint, pixel)
    assert start.errors(cameras).mean() > 3
    refined = refine_points(cameras.to_tensors(CPU), start.to(CPU), steps=6)
    np.testing.assert_allclose(refined.numpy().xyz, points, atol=1e-4)


def test_an_observation_that_cannot_be_undistorted_is_ignored_not_fatal() -> None:
    cameras = _cameras()
    points = np.array([[0.5, 0.2, 5.0], [0.0, -0.3, 4.5]])
    track, frame, keypoint, pixel = _observe(cameras, points)
    pixel[2] = np.nan  # e.g. an undistortion that diverged under absurd coefficients
    model = triangulate(cameras, track, frame, keypoint, pixel, max_error=1.0, min_angle=1.0)
    assert len(model) == 2 and len(model.frame) == 7
    np.testing.assert_allclose(model.xyz, points, atol=1e-6)


def test_refitting_only_the_points_that_lost_an_observation_gives_the_model_of_refitting_all() -> None:
    cameras = _cameras()
    rng = np.random.default_rng(5)
    points = rng.uniform([-1, -1, 4], [2, 1, 6], (40, 3))
    track, frame, keypoint, pixel = _observe(cameras, points)
    pixel += rng.normal(0, 0.3, pixel.shape)
    pixel[rng.choice(len(pixel), 25, replace=False)] += rng.uniform(-60, 60, (25, 2))  # wrong matches
    model = triangulate(cameras, track, frame, keypoint, pixel, max_error=2.0, min_angle=1.0)
    # The same rounds, every point fitted again in each.
    reference = SparseModel(np.zeros((0, 3)), track, frame, keypoint, pixel)
    on_cpu = cameras.to_tensors(CPU)
    for _ in range(4):
        observations = reference.to(CPU)
        xyz = linear_triangulation(on_cpu, observations.point, observations.frame, observations.pixel)
        reference = refine_points(on_cpu, dataclasses.replace(observations, xyz=xyz)).numpy()
        errors = reference.errors(cameras)
        order = np.lexsort((-errors, reference.point))
        worst = np.zeros(len(errors), bool)
        worst[order[np.r_[True, reference.point[order][1:] != reference.point[order][:-1]]]] = True
        if not (worst & (errors > 2.0)).any():
            break
        reference = reference.select(~(worst & (errors > 2.0)))
    reference = reference.select(
        np.isfinite(reference.xyz).all(1)[reference.point] & (reference.errors(cameras) <= 2.0)
    )
    assert 0 < len(model) < 40 + 1 and len(model.point) < len(track)
    for name in ("xyz", "point", "frame", "keypoint", "pixel"):
        np.testing.assert_array_equal(getattr(model, name), getattr(reference, name))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_triangulation_on_the_gpu_gives_the_cpu_result() -> None:
    cameras = _cameras(np.tile([-0.05, 0.01, 0.0, 0.0], (4, 1)))
    rng = np.random.default_rng(6)
    points = rng.uniform([-1, -1, 4], [2, 1, 6], (300, 3))
    track, frame, keypoint, pixel = _observe(cameras, points)
    pixel += rng.normal(0, 0.3, pixel.shape)
    pixel[rng.choice(len(pixel), 100, replace=False)] += rng.uniform(-60, 60, (100, 2))
    on_cpu = triangulate(cameras, track, frame, keypoint, pixel, max_error=2.0, min_angle=1.0)
    on_gpu = triangulate(
        cameras, track, frame, keypoint, pixel, max_error=2.0, min_angle=1.0, device=torch.device("cuda")
    )
    for name in ("point", "frame", "keypoint"):
        np.testing.assert_array_equal(getattr(on_gpu, name), getattr(on_cpu, name))
    np.testing.assert_allclose(on_gpu.xyz, on_cpu.xyz, atol=1e-9)


def test_a_triangulation_that_runs_out_of_device_memory_runs_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    cameras = _cameras()
    points = np.random.default_rng(8).uniform([-1, -1, 4], [2, 1, 6], (20, 3))
    original, devices = triangulation._triangulate_tracks, []

    def out_of_memory_off_the_cpu(cameras: CameraSet, model: SparseModel, **settings) -> SparseModel:
        devices.append(model.point.device.type)
        if model.point.device != CPU:
            raise torch.OutOfMemoryError("out of memory")
        return original(cameras, model, **settings)

    monkeypatch.setattr(triangulation, "_triangulate_tracks", out_of_memory_off_the_cpu)
    # meta: a device other than the CPU, on any machine
    model = triangulate(cameras, *_observe(cameras, points), max_error=1.0, min_angle=1.0, device=torch.device("meta"))
    np.testing.assert_allclose(model.xyz, points, atol=1e-6)
    assert devices == ["meta", "cpu"] and "runs on the CPU instead" in caplog.text


def test_running_out_of_memory_on_the_cpu_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    def out_of_memory(*args, **kwargs) -> SparseModel:
        raise torch.OutOfMemoryError("out of memory")

    monkeypatch.setattr(triangulation, "_triangulate_tracks", out_of_memory)
    cameras = _cameras()
    with pytest.raises(torch.OutOfMemoryError):
        triangulate(cameras, *_observe(cameras, np.array([[0.5, 0.2, 5.0]])), max_error=1.0, min_angle=1.0)
