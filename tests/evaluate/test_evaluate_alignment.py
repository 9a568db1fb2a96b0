"""Sim(3) alignment of camera centres: exact on exact data, unmoved by a few wrong centres."""

from __future__ import annotations

import numpy as np
from camera_sets import rotation_about

from vggt_sparse_ns.evaluate.alignment import align_centres, umeyama


def _known_similarity():
    return 2.5, rotation_about([1.0, -2.0, 0.5], 73.0), np.array([4.0, -1.0, 2.0])


def test_umeyama_recovers_a_known_similarity_exactly() -> None:
    scale, rotation, translation = _known_similarity()
    source = np.random.default_rng(0).normal(size=(8, 3))
    fitted = umeyama(source, scale * source @ rotation.T + translation)
    assert abs(fitted.scale - scale) < 1e-12
    np.testing.assert_allclose(fitted.rotation, rotation, atol=1e-12)
    np.testing.assert_allclose(fitted.translation, translation, atol=1e-12)


def test_umeyama_never_returns_a_mirror_for_mirrored_points() -> None:
    source = np.random.default_rng(1).normal(size=(6, 3))
    fitted = umeyama(source, source * [1.0, 1.0, -1.0])
    assert np.linalg.det(fitted.rotation) > 0


def test_umeyama_refuses_coinciding_source_points() -> None:
    assert umeyama(np.ones((4, 3)), np.random.default_rng(2).normal(size=(4, 3))) is None


def test_a_few_wrong_centres_do_not_move_the_alignment_of_the_others() -> None:
    scale, rotation, translation = _known_similarity()
    rng = np.random.default_rng(3)
    source = rng.normal(size=(12, 3))
    target = scale * source @ rotation.T + translation
    source[[2, 7]] += [[5.0, 0, 0], [0, -4.0, 3.0]]  # two lost cameras
    alignment = align_centres(source, target, threshold=0.1)
    assert alignment.inliers.tolist() == [i not in (2, 7) for i in range(12)]
    assert abs(alignment.similarity.scale - scale) < 1e-9
    np.testing.assert_allclose(alignment.similarity.rotation, rotation, atol=1e-9)
    # plain least squares over all centres is dragged by the two
    assert abs(umeyama(source, target).scale - scale) > 0.05


def test_many_cameras_are_sampled_and_still_aligned_exactly() -> None:
    scale, rotation, translation = _known_similarity()
    rng = np.random.default_rng(4)
    source = rng.normal(size=(300, 3))
    target = scale * source @ rotation.T + translation
    source[:30] += rng.normal(size=(30, 3)) * 3  # 10 % lost
    alignment = align_centres(source, target, threshold=0.05)
    assert alignment.inliers[30:].all() and not alignment.inliers[:30].any()
    np.testing.assert_allclose(alignment.similarity.apply(source[30:]), target[30:], atol=1e-9)


def test_collinear_centres_are_mapped_onto_their_reference_line() -> None:
    scale, rotation, translation = _known_similarity()
    source = np.c_[np.linspace(0, 5, 7), np.zeros(7), np.zeros(7)]
    target = scale * source @ rotation.T + translation
    alignment = align_centres(source, target, threshold=0.1)
    assert alignment.inliers.all() and np.linalg.det(alignment.similarity.rotation) > 0
    np.testing.assert_allclose(alignment.similarity.apply(source), target, atol=1e-9)
