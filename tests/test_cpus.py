"""usable_cpus: the affinity set, limited by a control group's CPU quota."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vggt_sparse_ns.cpus import usable_cpus


@pytest.fixture
def sixteen_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 192)


def test_without_a_quota_the_affinity_set_counts_not_the_hosts_cpus(tmp_path: Path, sixteen_cpus) -> None:
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cpus(tmp_path) == 16
    assert usable_cpus(tmp_path / "absent") == 16


def test_a_cgroup_v2_quota_limits_the_count_rounded_up(tmp_path: Path, sixteen_cpus) -> None:
    (tmp_path / "cpu.max").write_text("450000 100000\n")
    assert usable_cpus(tmp_path) == 5


def test_a_cgroup_v1_quota_limits_the_count_and_minus_one_means_none(tmp_path: Path, sixteen_cpus) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    assert usable_cpus(tmp_path) == 2
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert usable_cpus(tmp_path) == 16


def test_a_quota_larger_than_the_affinity_set_does_not_raise_the_count(tmp_path: Path, sixteen_cpus) -> None:
    (tmp_path / "cpu.max").write_text("6400000 100000\n")
    assert usable_cpus(tmp_path) == 16
