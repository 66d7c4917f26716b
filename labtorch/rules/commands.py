"""Copy-pasteable install commands for a plan, for one user without a fleet."""

from __future__ import annotations

import shlex

from labtorch.rules.plan import PIP, Plan


def _quote(word: str, windows: bool) -> str:
    if windows:
        return f'"{word}"' if any(c in word for c in ' *<>|&^"') else word
    return shlex.quote(word)


def install_command(plan: Plan, env_name: str = "torch") -> str:
    """The command that installs ``plan`` through its mirror; empty for a refusal."""
    if plan.refused:
        return ""
    windows = plan.platform == "win-64"
    specs = [pin.spec for pin in (*plan.packages, *plan.toolkit)]
    if plan.installer == PIP:
        python = f"py -{plan.python}" if windows else f"python{plan.python}"
        words = [*python.split(), "-m", "pip", "install", "--index-url", plan.index_url]
        if plan.wheel_index:
            layout, url = plan.wheel_index
            words += ["--find-links" if layout == "flat" else "--extra-index-url", url]
    else:
        words = ["conda", "create", "-n", env_name, "--override-channels"]
        for url in plan.channel_urls:
            words += ["-c", url]
        words.append(f"python={plan.python}")
    return " ".join(_quote(word, windows) for word in [*words, *specs])
