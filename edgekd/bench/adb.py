"""The adb client: find the executable, pick the one phone to use, and run commands on it.

Kept apart from the evaluation run (edgekd.bench.device) so that what talks to adb can be faked in one place
(tests/fixtures/fake_adb.py) and every adb failure becomes the same kind of one-line EdgekdError: the user fixes a
cable, a prompt or a path, never reads a traceback.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from edgekd.core.errors import EdgekdError


def find_adb(adb: str | os.PathLike | None = None) -> str:
    """The adb executable: the given path, else PATH, else $ANDROID_HOME / $ANDROID_SDK_ROOT platform-tools."""
    if adb is not None:
        path = Path(adb)
        if not path.is_file() or not os.access(path, os.X_OK):
            raise EdgekdError(f"{path}: no adb executable there; pass the path of Android platform-tools' adb")
        return str(path)
    found = shutil.which("adb")
    if found:
        return found
    for var in ("ANDROID_HOME", "ANDROID_SDK_ROOT"):
        root = os.environ.get(var)
        if root:
            candidate = Path(root) / "platform-tools" / "adb"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    raise EdgekdError("adb not found: install Android platform-tools and put adb on PATH, set ANDROID_HOME, "
                      "or pass --adb PATH")


class Adb:
    """One device's adb: every command carries ``-s SERIAL``; failures become one-line EdgekdErrors."""

    def __init__(self, exe: str, serial: str | None = None, timeout: float = 600.0):
        self.exe = exe
        self.serial = serial
        self.timeout = timeout

    def run(self, *args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
        cmd = [self.exe] + (["-s", self.serial] if self.serial else []) + [str(a) for a in args]
        limit = timeout or self.timeout
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            raise EdgekdError(f"`adb {' '.join(map(str, args))}` did not finish in {limit:.0f} s; "
                              "check the connection (adb devices)") from None
        except OSError as e:
            raise EdgekdError(f"cannot run {self.exe}: {e.strerror}") from None
        if check and proc.returncode != 0:
            raise EdgekdError(f"`adb {' '.join(map(str, args))}` failed: {last_line(proc)}")
        return proc

    def shell(self, command: str, check: bool = True, timeout: float | None = None) -> str:
        return self.run("shell", command, check=check, timeout=timeout).stdout

    def push(self, local: str | os.PathLike, remote: str) -> None:
        self.run("push", str(local), remote)

    def pull(self, remote: str, local: str | os.PathLike) -> None:
        self.run("pull", remote, str(local))

    def install(self, apk: str | os.PathLike) -> None:
        """Installs or updates ``apk``, keeping the app's data and granting its permissions (-r -g)."""
        out = self.run("install", "-r", "-g", str(apk), timeout=300)
        if "Success" not in out.stdout:
            raise EdgekdError(f"installing {apk} failed: {last_line(out)}")

    def has_package(self, package: str) -> bool:
        return "package:" in self.shell(f"pm path {package}", check=False)

    def getprop(self) -> dict[str, str]:
        props = {}
        for line in self.shell("getprop", check=False).splitlines():
            m = re.match(r"\[(.+?)\]: \[(.*)\]", line.strip())
            if m:
                props[m.group(1)] = m.group(2)
        return props


def connect(adb: str | os.PathLike | None = None, serial: str | None = None) -> Adb:
    """The client for the phone to use: adb found as ``find_adb`` does, the device as ``pick_device`` does."""
    exe = find_adb(adb)
    return Adb(exe, pick_device(exe, serial))


def list_devices(adb: Adb) -> list[tuple[str, str]]:
    """(serial, state) of everything `adb devices -l` lists; state is device, unauthorized, offline, ..."""
    out = adb.run("devices", "-l", timeout=30).stdout
    devices = []
    for line in out.splitlines():
        line = line.strip()
        if not line or line.startswith("List of devices") or line.startswith("*"):
            continue
        parts = line.split()
        if len(parts) >= 2:
            # "no permissions (...)" spans several words; the state is what follows the serial.
            state = "no permissions" if parts[1] == "no" else parts[1]
            devices.append((parts[0], state))
    return devices


def pick_device(exe: str, serial: str | None = None) -> str:
    """The serial to use: the given one if attached and ready, else the only ready device."""
    devices = list_devices(Adb(exe))
    states = dict(devices)
    if serial is not None:
        if serial not in states:
            attached = ", ".join(s for s, _ in devices) or "none"
            raise EdgekdError(f"device {serial} is not attached (attached: {attached}); see `adb devices -l`")
        check_state(serial, states[serial])
        return serial
    ready = [s for s, state in devices if state == "device"]
    if len(ready) == 1:
        return ready[0]
    if len(ready) > 1:
        raise EdgekdError(f"{len(ready)} Android devices attached ({', '.join(ready)}); choose one with --serial")
    if devices:
        check_state(*devices[0])
    raise EdgekdError("no Android device attached: connect a phone with USB debugging enabled "
                      "(`adb devices` lists none)")


def check_state(serial: str, state: str) -> None:
    """Says what the user has to do for a device adb lists but cannot use yet."""
    if state == "device":
        return
    if state == "unauthorized":
        raise EdgekdError(f"device {serial} is unauthorized: unlock it and accept the USB debugging prompt")
    raise EdgekdError(f"device {serial} is {state}: reconnect it (or `adb kill-server`) until `adb devices` shows it "
                      "as 'device'")


def last_line(proc: subprocess.CompletedProcess) -> str:
    """The line that says what went wrong: adb and am print errors last, on stderr or (older versions) stdout."""
    for text in (proc.stderr, proc.stdout):
        lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return f"exit status {proc.returncode}"
