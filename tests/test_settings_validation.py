"""Settings that must be refused before any host is touched: an env name that leaves its
directory, a venv root that is not a plain absolute path, a number where text is meant (what
pyinfra's --data makes of 2.3 or 3.10), a wheel URL with a placeholder other than {variant}; and
a bad group value blamed on the file that really sets it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.inventory import Inventory
from pyinfra_cli.util import parse_cli_arg

from labtorch.deploy.pytorch import _check_every_source, _where_group_sets, check_inventory_settings
from labtorch.deploy.settings import SettingsError, check_keys, keys_set_by, settings_from

WHERE = "pyinfra --data"


def refused(data: dict) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        check_keys(data, WHERE)
    assert caught.value.where == WHERE
    assert caught.value.key == next(iter(data))
    return caught.value


# ---------------------------------------------------------------- the env's place


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("..", "outside that directory (.. of conda's envs/ is the conda root: the base env)"),
        (".", "that directory itself"),
        ("../torch", "outside that directory"),
        ("envs/../..", "outside that directory"),
        ("/opt/conda", "outside that directory"),
        ("a/b", "a nested directory"),
        ("torch/", "a nested directory"),
        ("", "must not be empty"),
        (".torch", "must not start with . or -"),
        ("-n", "must not start with . or -"),
        ("my env", "letters, digits, _ . -"),
        ("torch;rm", "letters, digits, _ . -"),
        (["torch"], 'a plain env name such as "torch"'),
    ],
)
def test_an_env_name_that_leaves_its_directory_is_refused(name, problem):
    assert problem in str(refused({"torch_env": name}))


@pytest.mark.parametrize("name", ["torch", "torch-2.7", "py3.11_cu126", "T", "0day", "a..b"])
def test_a_plain_env_name_passes(name):
    check_keys({"torch_env": name}, WHERE)
    assert settings_from({"torch_env": name}).env == name


@pytest.mark.parametrize(
    "root", ["venvs", "./venvs", "/", "//", "/opt/../etc", "/opt/./v", "/a b", ""]
)
def test_a_venv_root_that_is_not_a_plain_absolute_directory_is_refused(root):
    assert "must be an absolute directory" in str(refused({"torch_venv_root": root}))


@pytest.mark.parametrize("root", ["/opt/labtorch/venvs", "/srv/venvs/", "/v"])
def test_a_plain_absolute_venv_root_passes(root):
    check_keys({"torch_venv_root": root}, WHERE)


# ---------------------------------------------------------------- numbers from --data


@pytest.mark.parametrize(
    ("typed", "parsed"),
    [("2.3", 2.3), ("3.10", 3.1), ("2.10", 2.1), ("2", 2), ('"3.10"', "3.10"), ("2.3.1", "2.3.1")],
)
def test_what_pyinfra_data_makes_of_a_version(typed, parsed):
    """The reason numbers are refused, not read: pyinfra's own --data parser loses the text."""
    assert parse_cli_arg(typed) == parsed
    assert type(parse_cli_arg(typed)) is type(parsed)


@pytest.mark.parametrize(
    ("key", "typed", "example"),
    [
        ("torch_release", "2.3", "2.3"),
        ("torch_release", "2.10", "2.3"),
        ("torch_release", "2", "2.3"),
        ("torch_python", "3.10", "3.10"),
        ("torch_python", "3.11", "3.10"),
        ("torch_env", "2024", "..."),
        ("torch_variant", "126", "..."),
    ],
)
def test_a_number_where_text_is_meant_is_refused_with_how_to_quote_it(key, typed, example):
    error = str(refused({key: parse_cli_arg(typed)}))
    assert f"is the number {parse_cli_arg(typed)!r}, not text: quote it" in error
    assert f"--data '{key}=\"{example}\"' on the command line" in error
    assert f'{key} = "{example}" in a file' in error


@pytest.mark.parametrize(
    ("key", "typed"),
    [("torch_release", '"2.3"'), ("torch_python", '"3.10"'), ("torch_env", '"2024"')],
)
def test_the_quoted_form_the_message_gives_passes(key, typed):
    value = parse_cli_arg(typed)
    check_keys({key: value}, WHERE)
    assert getattr(settings_from({key: value}), key.removeprefix("torch_")) == typed.strip('"')


def test_booleans_and_lists_are_not_numbers():
    check_keys({"torch_toolkit": True, "torch_fallback_mirrors": ["bfsu"]}, WHERE)
    assert "must be True or False, not 1" in str(refused({"torch_toolkit": 1}))


# ---------------------------------------------------------------- the wheel URL's placeholders


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://x/{variant}/{y}/", "only the placeholder {variant}, not {y}"),
        ("http://x/{}/", "only the placeholder {variant}, not {}"),
        ("http://x/{0}/{variant}/", "only the placeholder {variant}, not {0}"),
        ("http://x/{variant!r}/", "not {variant!r}"),
        ("http://x/{variant:>8}/", "not {variant:>8}"),
        ("http://x/{variant.upper}/", "not {variant.upper}"),
        ("http://x/{variant/", "is not a valid URL template"),
        ("http://x/}{variant}/", "is not a valid URL template"),
        ("http://x/whl/", "must contain {variant}"),
        ("http://x/{{variant}}/", "must contain {variant}"),
    ],
)
def test_a_wheel_url_with_another_placeholder_is_refused(url, problem):
    assert problem in str(refused({"torch_wheel_mirror_url": url}))


@pytest.mark.parametrize(
    "url",
    ["http://x/{variant}/", "https://m/whl/{variant}/{variant}.html", "http://x/{{a}}/{variant}"],
)
def test_every_wheel_url_that_passes_formats_on_the_hosts(url):
    check_keys({"torch_wheel_mirror_url": url}, WHERE)
    assert "cu126" in url.format(variant="cu126")


# ---------------------------------------------------------------- who sets a group's key


@pytest.fixture
def group_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "group_data").mkdir()
    return tmp_path / "group_data"


@pytest.mark.parametrize(
    ("source", "sets"),
    [
        ("# torch_variant comes from the inventory\n", False),
        ('"""Set torch_variant in the inventory."""\nx = "torch_variant"\n', False),
        ("def f():\n    torch_variant = 'cpu'\n", False),
        ("class C:\n    torch_variant = 'cpu'\n", False),
        ("from somewhere import torch_variant\n", False),
        ("y = [torch_variant for torch_variant in ('cpu',)]\n", False),
        ("torch_variant = 'cpu'\n", True),
        ("torch_variant: str = 'cpu'\n", True),
        ("torch_variant, torch_env = 'cpu', 'torch'\n", True),
        ("if True:\n    torch_variant = 'cpu'\n", True),
        ("for torch_variant in ('cpu',):\n    pass\n", True),
        ("torch_variant = 'a'\n__all__ = ['torch_env']\ntorch_env = 'x'\n", False),
    ],
)
def test_a_group_file_sets_a_key_only_by_binding_it(group_dir, source, sets):
    (group_dir / "gpu.py").write_text(source)
    assert ("torch_variant" in keys_set_by(group_dir / "gpu.py")) is sets
    where = "group_data/gpu.py" if sets else "group gpu of the inventory"
    assert _where_group_sets("gpu", "torch_variant") == where


def test_a_bad_inventory_group_value_is_not_blamed_on_a_file_that_only_mentions_it(group_dir):
    (group_dir / "gpu.py").write_text(
        '"""GPU hosts."""\n\n# torch_variant is set in the inventory.\ntorch_probe = "always"\n'
    )
    inventory = Inventory((["h1"], {}), gpu=(["h1"], {"torch_variant": "cuda12"}))
    with pytest.raises(SettingsError) as caught:
        _check_every_source(inventory)
    assert (caught.value.where, caught.value.key) == ("group gpu of the inventory", "torch_variant")
    with pytest.raises(PyinfraError, match=r"^labtorch settings: group gpu of the inventory: "):
        check_inventory_settings(inventory)


def test_a_bad_value_the_group_file_sets_is_blamed_on_it(group_dir):
    (group_dir / "gpu.py").write_text('torch_env = ".."\n')
    inventory = Inventory((["h1"], {}), gpu=(["h1"], {"torch_env": ".."}))
    with pytest.raises(SettingsError) as caught:
        _check_every_source(inventory)
    assert (caught.value.where, caught.value.key) == ("group_data/gpu.py", "torch_env")


def test_data_from_the_command_line_is_checked_first():
    inventory = Inventory((["h1"], {}), override_data={"torch_env": "."})
    with pytest.raises(SettingsError) as caught:
        _check_every_source(inventory)
    assert (caught.value.where, caught.value.key) == ("pyinfra --data", "torch_env")
