"""Fargate's valid vCPU/memory pairs, checked before anything is submitted."""

from __future__ import annotations

from batchsweep.errors import SpecError

# vCPU -> valid memory sizes in MiB (AWS Batch on Fargate).
VALID: dict[float, list[int]] = {
    0.25: [512, 1024, 2048],
    0.5: list(range(1024, 4096 + 1, 1024)),
    1: list(range(2048, 8192 + 1, 1024)),
    2: list(range(4096, 16384 + 1, 1024)),
    4: list(range(8192, 30720 + 1, 1024)),
    8: list(range(16384, 61440 + 1, 4096)),
    16: list(range(32768, 122880 + 1, 8192)),
}


def size_problem(vcpus: float, memory_mib: int) -> str | None:
    """What is wrong with a vCPU/memory pair on Fargate (naming the nearest valid sizes), or None."""
    if vcpus not in VALID:
        return (
            f"resources.vcpus: Fargate has no {vcpus:g} vCPU size; valid: "
            f"{', '.join(f'{v:g}' for v in VALID)}"
        )
    options = VALID[vcpus]
    if memory_mib in options:
        return None
    nearest = sorted(options, key=lambda m: abs(m - memory_mib))[:2]
    return (f"resources.memory_mib: {memory_mib} MiB is not valid with {vcpus:g} vCPU on Fargate; "
            f"nearest valid: {' or '.join(map(str, sorted(nearest)))} (range {options[0]}-{options[-1]})")


def check_pair(vcpus: float, memory_mib: int) -> None:
    problem = size_problem(vcpus, memory_mib)
    if problem:
        raise SpecError(problem)
