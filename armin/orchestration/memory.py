"""The per-trial memory bound: one trial's blow-up fails that trial alone, with a reason naming the bound.

The bound is enforced in the trial's own process with RLIMIT_DATA (private writable memory: the
heap and anonymous mappings, which is where tensors live). Unlike RLIMIT_AS it leaves out shared
mappings (Ray's object store is mapped into every worker), code and read-only or PROT_NONE
reservations (CUDA reserves terabytes of address space that way). The limit is the process's
data size when the trial starts plus the bound, so the bound is what the trial itself may add;
an allocation beyond it fails inside the trial (MemoryError, or torch's allocator RuntimeError),
long before the node runs low and Ray's memory monitor kills some other trial. The old limit comes
back when the trial ends: Ray reuses worker processes.

With `resources.memory_gb` unset the bound is the trial's share of its node by CPUs (node memory x
cpus per trial / node CPUs): the trials that fit by CPU then fit in memory too. With it set, the
trial also reserves that much of Ray's `memory` resource, so the scheduler never packs more bound
trials on a node than its memory holds.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

GIB = 2**30
CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def node_memory() -> int:
    """Bytes of memory on this node: physical memory, or the container's cgroup limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def node_cpus() -> float:
    """The CPUs Ray gave this node (what the trials' `cpus` are shares of); os.cpu_count() outside Ray."""
    import ray

    if ray.is_initialized():
        me = ray.get_runtime_context().get_node_id()
        for node in ray.nodes():
            if node["NodeID"] == me and node["Resources"].get("CPU"):
                return float(node["Resources"]["CPU"])
    return float(os.cpu_count() or 1)


def trial_bound(memory_gb: float | None, cpus: float) -> int:
    """The bound in bytes: `memory_gb`, or the trial's CPU share of its node (module docstring)."""
    if memory_gb is not None:
        return int(memory_gb * GIB)
    return int(node_memory() * min(1.0, cpus / node_cpus()))


def data_size() -> int:
    """This process's private writable memory now (VmData), what RLIMIT_DATA counts."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1]) * 1024
    raise OSError("no VmData in /proc/self/status")


@contextmanager
def bounded(bound_bytes: int) -> Iterator[None]:
    """Let this process add at most `bound_bytes` of private writable memory while the block runs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = data_size() + bound_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
