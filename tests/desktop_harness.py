"""A throwaway X desktop for tray tests: Xvfb with a trayer tray host, and the tray's environment."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

TRAY_TOOLS = ("Xvfb", "trayer")
DEBIAN_PACKAGES = {"Xvfb": "xvfb", "trayer": "trayer", "xdotool": "xdotool"}


@contextmanager
def tray_display(*extra_tools: str) -> Iterator[str]:
    """Yields the name (":N") of a fresh Xvfb display with a tray host in a 200x32 top-right panel.

    Skips the test when Xvfb, trayer or one of ``extra_tools`` is missing or Xvfb cannot start.
    """
    tools = (*TRAY_TOOLS, *extra_tools)
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        packages = ", ".join(DEBIAN_PACKAGES.get(tool, tool) for tool in tools)
        pytest.skip(f"needs {', '.join(missing)} (Debian: {packages})")
    read_end, write_end = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        number = reader.readline().strip()
    if not number:
        xvfb.wait(timeout=5)
        pytest.skip("Xvfb did not start")
    name = f":{number}"
    trayer = subprocess.Popen(
        ["trayer", "--edge", "top", "--align", "right", "--widthtype", "pixel", "--width", "200",
         "--heighttype", "pixel", "--height", "32"],
        env={**os.environ, "DISPLAY": name},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield name
    finally:
        for process in (trayer, xvfb):
            process.terminate()
            process.wait(timeout=5)


def tray_env(display: str, session_bus_address: str) -> dict[str, str]:
    """The environment a pystray GTK tray needs on ``display`` with the given session bus."""
    return {
        **os.environ,
        "DISPLAY": display,
        "DBUS_SESSION_BUS_ADDRESS": session_bus_address,
        "PYSTRAY_BACKEND": "gtk",
        "NO_AT_BRIDGE": "1",
    }
