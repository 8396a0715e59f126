"""What a backend is: tensor specs and the three calls the runner makes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from common.cli import UserError


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # ints, or None for a dynamic axis
    dtype: np.dtype

    @property
    def batch_is_dynamic(self) -> bool:
        return not isinstance(self.shape[0], int)

    def sample_shape(self) -> tuple[int, ...]:
        rest = self.shape[1:]
        if not all(isinstance(d, int) for d in rest):
            raise UserError(f"model input '{self.name}' has dynamic axes {self.shape}: "
                            "raw bins need a fixed sample shape")
        return tuple(rest)


class Backend(Protocol):
    name: str

    def input_specs(self) -> list[TensorSpec]: ...

    def output_names(self) -> list[str]: ...

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...
