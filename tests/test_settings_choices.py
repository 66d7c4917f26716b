"""The settings that take one of a few words (or a path): torch_driver_policy, torch_conda_channel,
torch_condarc_scope, torch_pip_scope, torch_probe. Each accepted value reaches Settings as
written; anything else is refused with the choices; and the scopes decide which file the host
state script reads."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from labtorch.deploy.settings import Settings, SettingsError, check_keys, settings_from
from labtorch.facts.host_state import host_state_script, parse_host_state

WHERE = "group_data/gpu.py"

CHOICES = {
    "torch_driver_policy": ("auto", "strict", "minor"),
    "torch_conda_channel": ("auto", "pytorch", "conda-forge"),
    "torch_probe": ("on-change", "always"),
}
SCOPES = {
    "torch_condarc_scope": ("auto", "system", "user"),
    "torch_pip_scope": ("env", "user", "global"),
}


@pytest.mark.parametrize(
    ("key", "value"),
    [(key, value) for key, values in {**CHOICES, **SCOPES}.items() for value in values]
    + [("torch_condarc_scope", "/etc/conda/condarc.d/50-labtorch.yaml")]
    + [("torch_pip_scope", "/etc/xdg/pip/pip.conf")],
)
def test_each_accepted_value_reaches_the_settings(key, value):
    check_keys({key: value}, WHERE)
    assert getattr(settings_from({key: value}), key.removeprefix("torch_")) == value


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("torch_driver_policy", "loose"),
        ("torch_driver_policy", "Strict"),
        ("torch_driver_policy", ""),
        ("torch_driver_policy", None),
        ("torch_conda_channel", "nvidia"),
        ("torch_conda_channel", "conda_forge"),
        ("torch_conda_channel", ["pytorch"]),
        ("torch_probe", "never"),
        ("torch_probe", True),
        ("torch_probe", "on_change"),
    ],
)
def test_a_value_outside_the_choices_is_refused_naming_them(key, value):
    choices = ", ".join(CHOICES[key])
    message = f"{WHERE}: {key}: must be one of {choices}, not {value!r}"
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$") as caught:
        check_keys({key: value}, WHERE)
    assert (caught.value.where, caught.value.key) == (WHERE, key)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("torch_condarc_scope", "global"),
        ("torch_condarc_scope", "~/.condarc"),
        ("torch_pip_scope", "system"),
        ("torch_pip_scope", "pip.conf"),
        ("torch_pip_scope", "venv"),
    ],
)
def test_a_scope_that_is_neither_a_choice_nor_an_absolute_path_is_refused(key, value):
    choices = ", ".join(SCOPES[key])
    message = f"{WHERE}: {key}: must be one of {choices} or an absolute path, not {value!r}"
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        check_keys({key: value}, WHERE)


def test_the_defaults():
    settings = Settings()
    assert (settings.conda_channel, settings.pip_scope, settings.condarc_scope) == (
        "auto",
        "env",
        "auto",
    )
    assert (settings.probe, settings.venv_root) == ("on-change", "/opt/labtorch/venvs")
    assert settings.driver_policy in CHOICES["torch_driver_policy"]


def _state(tmp_path: Path, installer: str, condarc_scope: str, pip_scope: str):
    """Run the host state script here, as a non-root-looking HOME with a Miniconda."""
    home = tmp_path / "home"
    conda = home / "miniconda3" / "bin" / "conda"
    conda.parent.mkdir(parents=True, exist_ok=True)
    conda.write_text("#!/bin/sh\nexit 1\n")
    conda.chmod(0o755)
    script = host_state_script(
        installer, "torch", condarc_scope, str(tmp_path / "venvs"), pip_scope
    )
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "CONDA_EXE": ""}
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, check=True)
    return parse_host_state(done.stdout.splitlines()), home


@pytest.mark.parametrize(
    ("installer", "pip_scope", "expected"),
    [
        ("conda", "env", "{home}/miniconda3/envs/torch/pip.conf"),
        ("pip", "env", "{tmp}/venvs/torch/pip.conf"),
        ("pip", "user", "{home}/.config/pip/pip.conf"),
        ("conda", "global", "/etc/pip.conf"),
        ("pip", "/srv/pip/pip.conf", "/srv/pip/pip.conf"),
    ],
)
def test_pip_scope_picks_the_pip_conf_labtorch_owns(tmp_path, installer, pip_scope, expected):
    state, home = _state(tmp_path, installer, "system", pip_scope)
    assert state.pip_conf_path == expected.format(home=home, tmp=tmp_path)


@pytest.mark.parametrize(
    ("condarc_scope", "expected"),
    [
        ("system", "{home}/miniconda3/.condarc"),
        ("user", "{home}/.condarc"),
        ("/etc/conda/condarc.d/50-labtorch.yaml", "/etc/conda/condarc.d/50-labtorch.yaml"),
    ],
)
def test_condarc_scope_picks_the_condarc_labtorch_owns(tmp_path, condarc_scope, expected):
    state, home = _state(tmp_path, "conda", condarc_scope, "env")
    assert state.condarc_path == expected.format(home=home)
