"""Just enough tensor for a probe's matmul: ``ones``/``zeros``, ``@``, ``sum``, ``item``, devices.

Data live in a flat Python list on every device; a tensor on ``cuda`` only checks, as each of its
kernels "runs", that the build can use that GPU.
"""

from __future__ import annotations

import math

from torch import cuda


class device:  # lowercase, as real torch names it
    """``torch.device("cuda:0")``, ``torch.device("cpu")``, ``torch.device("cuda", 1)``."""

    def __init__(self, spec: str | device, index: int | None = None) -> None:
        kind, _, number = str(spec).partition(":")
        if kind not in ("cpu", "cuda"):
            raise RuntimeError(
                f"Expected one of cpu, cuda device type at start of device string: {spec}"
            )
        self.type = kind
        self.index = index if index is not None else (int(number) if number else None)

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        index = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{index})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, device) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


def _placed(spec: str | device | None) -> device:
    """Where a new tensor goes: ``cuda`` means the current GPU, and the GPU must run kernels."""
    where = device(spec or "cpu")
    if where.type == "cuda":
        where = device("cuda", where.index or 0)
        cuda.launch_kernel(where)
    return where


class Tensor:
    def __init__(self, values: list[float], shape: tuple[int, ...], where: device) -> None:
        self._values = values
        self.shape = shape
        self.device = where

    def _run_on_device(self) -> None:
        if self.device.type == "cuda":
            cuda.launch_kernel(self.device)

    def __matmul__(self, other: Tensor) -> Tensor:
        return matmul(self, other)

    def sum(self) -> Tensor:
        self._run_on_device()
        return Tensor([math.fsum(self._values)], (), self.device)

    def item(self) -> float:
        if len(self._values) != 1:
            raise RuntimeError(
                f"a Tensor with {len(self._values)} elements cannot be converted to Scalar"
            )
        return self._values[0]

    def to(self, spec: str | device) -> Tensor:
        return Tensor(list(self._values), self.shape, _placed(spec))

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, index: int | None = None) -> Tensor:
        return self.to(device("cuda", index))

    def tolist(self) -> list | float:
        return _nested(self._values, self.shape) if self.shape else self._values[0]

    def __repr__(self) -> str:
        on = "" if self.device.type == "cpu" else f", device='{self.device}'"
        return f"tensor({self.tolist()}{on})"


def _nested(values: list[float], shape: tuple[int, ...]) -> list:
    if len(shape) == 1:
        return list(values)
    step = len(values) // shape[0]
    return [_nested(values[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def _filled(value: float, size: tuple, spec: str | device | None) -> Tensor:
    shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else size
    return Tensor([float(value)] * math.prod(shape), tuple(shape), _placed(spec))


def ones(*size: int, device: str | device | None = None) -> Tensor:
    return _filled(1.0, size, device)


def zeros(*size: int, device: str | device | None = None) -> Tensor:
    return _filled(0.0, size, device)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """The product of two matrices on one device."""
    if a.device != b.device:
        raise RuntimeError(
            "Expected all tensors to be on the same device, but found at least two devices, "
            f"{a.device} and {b.device}!"
        )
    if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[1] != b.shape[0]:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({a.shape} and {b.shape})")
    a._run_on_device()
    rows, inner, cols = a.shape[0], a.shape[1], b.shape[1]
    values = [
        math.fsum(a._values[r * inner + k] * b._values[k * cols + c] for k in range(inner))
        for r in range(rows)
        for c in range(cols)
    ]
    return Tensor(values, (rows, cols), a.device)
