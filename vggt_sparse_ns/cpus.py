"""How many CPUs this process may use: what worker pools are sized by (light to import)."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process may run on: its affinity set (taskset, cpusets), further limited by a CPU quota of
    its control group (``docker --cpus``, Kubernetes limits; cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``).
    ``os.cpu_count()`` counts the host's CPUs, so a pool sized by it on a 16-core share of a large host starts
    far more processes than there are cores.

    Example:
        >>> usable_cpus() >= 1
        True
    """
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def _cgroup_quota(root: Path) -> float | None:
    """CPUs' worth of time the control group may use per period; None without a limit (or no cgroup files)."""
    try:
        v2 = root / "cpu.max"
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1 = root / "cpu"
        if (v1 / "cpu.cfs_quota_us").is_file():
            quota = int((v1 / "cpu.cfs_quota_us").read_text())
            return None if quota <= 0 else quota / int((v1 / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None
