"""CI runs exactly the README's test command, which installs Debian's Chromium for the browser tests."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    lines = [line for line in readme.splitlines() if "python -m pytest" in line]
    command = lines[0].split("  #")[0].strip()
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if "python -m pytest" in line]
    assert ci == [command]
    assert "install -y -qq chromium" in command and "test -x /usr/bin/chromium" in command
    # another package manager holding the apt lock (unattended upgrades) is waited for, not a failure
    apt_commands = [part for part in command.split("&&") if "apt-get" in part]
    assert len(apt_commands) == 2 and all("-o DPkg::Lock::Timeout=" in part for part in apt_commands)
