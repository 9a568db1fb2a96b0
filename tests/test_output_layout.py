"""output_layout: the names of an output dataset, and which entries of a folder belong to a dataset."""

from __future__ import annotations

from pathlib import Path

from vggt_sparse_ns.output_layout import dataset_entries, derived_folders, present_downscales


def _make(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        if "." in name:
            path.write_text("x")
        else:
            path.mkdir()


def test_a_folders_dataset_entries_are_the_named_ones_and_never_the_users_files(tmp_path: Path) -> None:
    _make(
        tmp_path,
        "images", "images_2", "images_16", "depth", "depths_2", "colmap", "vggt", "sparse_pc.ply", "transforms.json",
        "vggt_sparse_cache.json", "photos", "notes.txt", "images_backup", "depth.png", "transforms.json.bak",
    )  # fmt: skip
    derived = ["colmap", "depth", "depths_2", "sparse_pc.ply", "transforms.json", "vggt", "vggt_sparse_cache.json"]
    assert dataset_entries(tmp_path, with_images=False) == derived
    assert dataset_entries(tmp_path, with_images=True) == sorted([*derived, "images", "images_2", "images_16"])
    assert dataset_entries(tmp_path / "missing", with_images=True) == []


def test_derived_folders_are_those_never_read_as_input(tmp_path: Path) -> None:
    _make(tmp_path, "images", "images_2", "depth", "depths_4", "colmap", "vggt", "photos")
    assert {path.name for path in derived_folders(tmp_path)} == {"images_2", "depth", "depths_4", "colmap", "vggt"}


def test_downscales_present_are_counted_up_to_the_first_missing(tmp_path: Path) -> None:
    _make(tmp_path, "images", "images_2", "images_4", "images_16")
    assert present_downscales(tmp_path) == 2
