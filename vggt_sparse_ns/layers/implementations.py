"""One way to choose how an operation runs: an ordered list of implementations and one ``auto``.

Words used throughout the package: an *operation* is what is computed (dense attention, covisibility
attention, block-sparse attention, the fused norms); an *implementation* is one way to compute it (a
GPU kernel, compiled FlexAttention, plain PyTorch); *kernel* names a GPU program only (layers/kernels/).
Each operation lists its implementations fastest first, and each implementation says why it cannot run
for given inputs (none: it can). ``Operation.choose`` resolves a choice against inputs: ``auto`` takes
the first implementation that can run, a name takes that implementation or refuses with its reasons.
The last implementation of every list is plain PyTorch, which runs everywhere and is the reference the
others are tested against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

Inputs = TypeVar("Inputs")
Run = TypeVar("Run")

AUTO = "auto"


def runs_everywhere(inputs: object) -> list[str]:
    """The reasons of a plain-PyTorch implementation: none, whatever the inputs."""
    return []


@dataclass(frozen=True)
class Implementation(Generic[Inputs, Run]):
    """One way to run an operation."""

    name: str
    """The word used for it in code, settings, command lines, summaries and benchmarks."""
    run: Run
    """What computes the operation (its signature is the operation's)."""
    not_supported_reasons: Callable[[Inputs], list[str]]
    """Why it cannot run for these inputs; an empty list when it can."""


@dataclass(frozen=True)
class Operation(Generic[Inputs, Run]):
    """An operation's implementations in order of preference (fastest first, plain PyTorch last)."""

    name: str
    implementations: tuple[Implementation[Inputs, Run], ...]

    @property
    def choices(self) -> tuple[str, ...]:
        """What a setting may name: ``auto``, then each implementation in order of preference."""
        return (AUTO, *(implementation.name for implementation in self.implementations))

    def named(self, name: str) -> Implementation[Inputs, Run]:
        """The implementation called ``name`` (tests run each one against the reference through this)."""
        self.check_choice(name)
        return next(implementation for implementation in self.implementations if implementation.name == name)

    def check_choice(self, choice: str) -> None:
        """Refuse, with the choices, a name that is neither ``auto`` nor one of the implementations."""
        if choice not in self.choices:
            raise ValueError(f"{self.name} has no implementation {choice!r}; choose one of {', '.join(self.choices)}")

    def choose(self, choice: str, inputs: Inputs) -> Implementation[Inputs, Run]:
        """The implementation that runs ``inputs``: for ``auto`` the first that can, else the one named.

        Raises:
            ValueError: the choice is unknown, or no implementation it allows can run these inputs (the
                message gives each one's reasons).
        """
        self.check_choice(choice)
        candidates = [item for item in self.implementations if choice in (AUTO, item.name)]
        refusals = []
        for implementation in candidates:
            reasons = implementation.not_supported_reasons(inputs)
            if not reasons:
                return implementation
            refusals.append(f"{implementation.name}: {'; '.join(reasons)}")
        raise ValueError(f"{self.name} cannot run these inputs with {choice}: {' | '.join(refusals)}")
