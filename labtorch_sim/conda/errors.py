"""conda's exceptions, reduced to what the stand-in raises, with conda's ``dump_map`` JSON shape."""

from __future__ import annotations

from typing import Any

_NOT_FOUND_HINT = (
    "\n\nTo search for alternate channels that may provide the conda package you're\n"
    "looking for, navigate to\n\n    https://anaconda.org\n\n"
    "and use the search bar at the top of the page.\n"
)


class CondaError(Exception):
    """An error conda reports to the user: exit status 1, and a JSON object under ``--json``."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        self.message = message
        self.kwargs = kwargs
        super().__init__(message)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}: {self}"

    def dump_map(self) -> dict[str, Any]:
        """What ``conda --json`` prints for this error (``conda.CondaError.dump_map``)."""
        return {
            "caused_by": "None",
            "error": repr(self),
            "exception_name": type(self).__name__,
            "exception_type": f"<class 'conda.exceptions.{type(self).__name__}'>",
            "message": str(self),
            **self.kwargs,
        }


class CondaMultiError(CondaError):
    """Several errors at once; conda raises it for failed downloads and checksum mismatches."""

    def __init__(self, errors: list[CondaError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors) + "\n")

    def __repr__(self) -> str:
        return "\n".join(repr(e) for e in self.errors)

    def dump_map(self) -> dict[str, Any]:
        return {
            "error": "Multiple Errors Encountered.",
            "errors": [e.dump_map() for e in self.errors],
            "exception_name": "CondaMultiError",
            "exception_type": "<class 'conda.CondaMultiError'>",
        }


class ArgumentError(CondaError):
    """A command line that conda rejects after parsing it."""


class CondaValueError(CondaError):
    """A value conda cannot use (an unreadable ``--file``, a bad spec)."""


class ConfigurationLoadError(CondaError):
    """A condarc file that is not YAML, or not a mapping."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            f"Unable to load configuration file.\n  path: {path}\n  reason: {reason}\n",
            path=path,
            reason=reason,
        )


class InvalidTypeError(CondaError):
    """A condarc key whose value has the wrong type."""

    def __init__(self, key: str, value: Any, source: str, wanted: str) -> None:
        super().__init__(
            f"Parameter {key} = {value!r} declared in {source} has type "
            f"{type(value).__name__}.\nValid types:\n  - {wanted}",
            parameter_name=key,
            parameter_value=value,
            source=source,
            valid_types=[wanted],
        )


class EnvironmentLocationNotFound(CondaError):
    """The target prefix is not a conda environment."""

    def __init__(self, location: str) -> None:
        super().__init__(f"Not a conda environment: {location}", location=location)


class CondaEnvironmentError(CondaError):
    """An operation that conda refuses on this environment (removing base)."""


class PackagesNotFoundInChannelsError(CondaError):
    """Specs that no record in the channels (or virtual package) can satisfy."""

    def __init__(self, packages: list[str], channel_urls: list[str]) -> None:
        packages_formatted = "\n".join(f"  - {p}" for p in packages)
        channels_formatted = "\n".join(f"  - {u}" for u in channel_urls)
        super().__init__(
            "The following packages are not available from current channels:\n\n"
            f"{packages_formatted}\n\nCurrent channels:\n\n{channels_formatted}{_NOT_FOUND_HINT}",
            packages=packages,
            packages_formatted=packages_formatted,
            channel_urls=channel_urls,
            channels_formatted=channels_formatted,
        )


class PackagesNotFoundError(CondaError):
    """``conda remove`` of packages the environment does not have."""

    def __init__(self, packages: list[str]) -> None:
        formatted = "\n".join(f"  - {p}" for p in packages)
        super().__init__(
            f"The following packages are missing from the target environment:\n{formatted}\n",
            packages=packages,
            packages_formatted=formatted,
        )


class UnsatisfiableError(CondaError):
    """Available packages that cannot be installed together."""

    def __init__(self, explanation: str) -> None:
        super().__init__(
            "The following specifications were found to be incompatible with each other:\n\n"
            + explanation
        )


class LibMambaUnsatisfiableError(UnsatisfiableError):
    """conda-libmamba-solver's unsatisfiable solve: its problems, one per line, as libmamba
    words them (``conda_libmamba_solver/exceptions.py``; the message is passed through as is)."""

    def __init__(self, problems: list[str]) -> None:
        lines = "\n".join(f"  - {problem}" for problem in problems)
        message = f"Encountered problems while solving:\n{lines}\n\n"
        CondaError.__init__(self, message + "Could not solve for environment specs\n")

    def dump_map(self) -> dict[str, Any]:
        # Its base class is conda's UnsatisfiableError; the exception lives in the solver plugin.
        module = "conda_libmamba_solver.exceptions"
        return {
            **super().dump_map(),
            "exception_type": f"<class '{module}.LibMambaUnsatisfiableError'>",
        }


class ChecksumMismatchError(CondaError):
    """A downloaded package whose md5/sha256 differs from the one the explicit file names."""

    def __init__(self, url: str, target: str, kind: str, expected: str, actual: str) -> None:
        super().__init__(
            "Conda detected a mismatch between the expected content and downloaded content\n"
            f"for url '{url}'.\n  download saved to: {target}\n"
            f"  expected {kind}: {expected}\n  actual {kind}: {actual}\n",
            url=url,
            target_full_path=target,
            checksum_type=kind,
            expected_checksum=expected,
            actual_checksum=actual,
        )


class CondaHTTPError(CondaError):
    """A download that failed."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"HTTP error for url <{url}>\n{reason}\n", url=url, reason=reason)


class InvalidMatchSpec(CondaValueError):
    """A package spec that does not parse."""

    def __init__(self, spec: str, reason: str) -> None:
        super().__init__(f"Invalid spec '{spec}': {reason}")


class UnavailableInvalidChannel(CondaError):
    """A channel whose repodata the server does not have (HTTP 404): unmirrored or misspelled."""

    def __init__(self, name: str, url: str, reason: str) -> None:
        super().__init__(
            f"HTTP 404 NOT FOUND for channel {name} <{url}>\n\n"
            "The channel is not accessible or is invalid.\n\n"
            "You will need to adjust your conda configuration to proceed.\n"
            "Use `conda config --show channels` to view your configuration's current state,\n"
            "and use `conda config --show-sources` to view config file locations.\n",
            channel_name=name,
            channel_url=url,
            status_code=404,
            reason=reason,
        )
