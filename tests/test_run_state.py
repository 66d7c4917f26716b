"""The first line of a failed command that says what went wrong, for the report."""

from __future__ import annotations

import pytest

from labtorch.deploy.run_state import first_error_line

CONDA_404 = [
    "Channels:",
    "UnavailableInvalidChannel: HTTP 404 NOT FOUND for channel conda-forge <http://m/x>",
    "",
    "The channel is not accessible or is invalid.",
    "Use `conda config --show-sources` to view config file locations.",
]


@pytest.mark.parametrize(
    ("lines", "line"),
    [
        (CONDA_404, CONDA_404[1]),
        (["LibMambaUnsatisfiableError: Encountered problems while solving:",
          "  - nothing provides cuda-cudart >=12.1,<12.2 needed by pytorch-cuda-12.1-ha16c6d3_5",
          "", "Could not solve for environment specs"],
         "LibMambaUnsatisfiableError: Encountered problems while solving: nothing provides "
         "cuda-cudart >=12.1,<12.2 needed by pytorch-cuda-12.1-ha16c6d3_5"),
        (["CondaHTTPError: HTTP 403 FORBIDDEN for url <http://m/x>:", "Elapsed: -"],
         "CondaHTTPError: HTTP 403 FORBIDDEN for url <http://m/x>:"),
        (["Collecting torch", "ERROR: No matching distribution found for torch==9"],
         "ERROR: No matching distribution found for torch==9"),
        (["labtorch: /root/.condarc: not valid YAML at line 1", "CondaHTTPError: x"],
         "/root/.condarc: not valid YAML at line 1"),
        (["Traceback (most recent call last):", "OSError: [Errno 28] No space left on device"],
         "OSError: [Errno 28] No space left on device"),
        (["downloading", "the download failed halfway"], "the download failed halfway"),
        (["one", "two"], "two"),
        (["", "  "], None),
    ],
)  # fmt: skip
def test_the_line_that_says_what_went_wrong(lines, line):
    assert first_error_line(lines) == line
