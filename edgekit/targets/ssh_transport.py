"""The ssh transport: argument lists to the system OpenSSH client, files as a tar stream on stdin.

Everything goes through the system OpenSSH client (``ssh``), always as an argument list
(``shell=False``) with ``BatchMode=yes`` (never a prompt), ``StrictHostKeyChecking=yes``
against the profile's own known_hosts file (an unknown or changed host key is an error, never
accepted), and the profile's identity file only.

ssh joins the remote command's words with spaces and the device's login shell parses them
again, so every remote word is quoted with ``shlex.quote``: the remote program receives exactly
the argument list edgekit built, whatever spaces or ``;`` a path contains. Files travel as a
tar stream on ssh's stdin, unpacked by the device's Python (no scp, no sftp-server, no shell
redirection); a run works in a fresh ``edgekit-*`` folder made inside the profile's
``work_dir`` and removed afterwards, also when the run failed.

``LocalConnection`` runs the same argument lists on this machine without ssh, so that tests
run the very upload, runner and cleanup steps a device runs (tests/targets/test_parity.py).
"""

from __future__ import annotations

import io
import posixpath
import shlex
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import DeviceError


@dataclass
class Completed:
    returncode: int
    stdout: bytes
    stderr: str


class Connection:
    """Runs argument lists on a device through the system ssh client."""

    def __init__(self, profile):
        self.profile = profile

    def ssh_command(self, argv: list[str]) -> list[str]:
        """The local ssh argument list that runs ``argv`` on the device, word for word."""
        p = self.profile
        options = [
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={p.known_hosts}",
            # Only the profile's file vouches for the device, not the system-wide one.
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "UpdateHostKeys=no",
            "-o", f"ConnectTimeout={max(1, round(p.connect_timeout_s))}",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4",
            "-o", "LogLevel=ERROR",
            "-p", str(p.port),
        ]
        if p.identity_file is not None:
            options += ["-o", "IdentitiesOnly=yes", "-i", str(p.identity_file)]
        # ssh sends one string that the login shell splits again: quote every word.
        remote = " ".join(shlex.quote(str(word)) for word in argv)
        return ["ssh", *options, "--", p.destination, remote]

    def run(self, argv: list[str], stdin: bytes | None = None, timeout: float | None = None,
            hold_stdin: bool = False) -> Completed:
        """Run ``argv`` on the device.

        Args:
            argv: the remote program and its arguments (never a shell string).
            stdin: bytes sent to the remote program's stdin, then closed.
            timeout: seconds before the local ssh is killed (default: the profile's timeout_s).
            hold_stdin: keep stdin open until the remote program exits (the runner exits
                when it closes, so killing ssh here also stops the run on the device).

        Raises:
            DeviceError: ssh is not installed, an identity file is missing, or ssh itself
                failed (unreachable, authentication, host key), with a one-line reason.
        """
        p = self.profile
        if p.identity_file is not None and not p.identity_file.is_file():
            raise DeviceError(f"identity file {p.identity_file} not found; fix identity_file in {p.path}", connection=True)
        timeout = p.timeout_s if timeout is None else timeout
        command = self.ssh_command(argv)
        try:
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, shell=False)
        except FileNotFoundError:
            raise DeviceError("the ssh client is not installed on this machine (apt-get install openssh-client)",
                              connection=True) from None
        out, err, timed_out = _communicate(proc, stdin, timeout, hold_stdin)
        stderr = err.decode("utf-8", "replace")
        if timed_out:
            raise DeviceError(f"{_program(argv)} on {p.describe()} took longer than {timeout:g} s and was stopped "
                              f"(raise timeout_s in {p.path.name if p.path else 'the profile'})", transient=True)
        if proc.returncode == 255 and (reason := ssh_failure(stderr, p)):
            raise DeviceError(reason, connection=True, transient=reason.startswith(TRANSIENT))
        return Completed(proc.returncode, out, stderr)


def _program(argv: list[str]) -> str:
    return posixpath.basename(argv[-1] if argv and argv[0] == "-" else argv[0]) if argv else "ssh"


def _communicate(proc: subprocess.Popen, stdin: bytes | None, timeout: float, hold_stdin: bool):
    """Like Popen.communicate, but stdin may stay open until the process exits, and the whole
    exchange, writing stdin included, ends within ``timeout``: stdin is written from a thread of
    its own, so a device that stops reading mid-upload (its pipe and socket buffers full) is
    killed at the timeout like one that stops answering, never waited on for ever."""
    chunks: dict[str, bytes] = {}

    def drain(name, stream):
        chunks[name] = stream.read()

    def feed():
        try:
            if stdin:
                proc.stdin.write(stdin)
            proc.stdin.flush()
            if not hold_stdin:
                proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):  # the process ended, or was killed at the timeout
            pass

    threads = [threading.Thread(target=drain, args=(n, s), daemon=True) for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    threads.append(threading.Thread(target=feed, daemon=True))
    for thread in threads:
        thread.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        timed_out = True
    finally:
        threads[-1].join(timeout=5)  # a killed process's pipe breaks: the writer ends at once
        if not proc.stdin.closed and not threads[-1].is_alive():
            try:
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
    for reader in threads[:-1]:
        reader.join()
    return chunks.get("out", b""), chunks.get("err", b""), timed_out


#: how the reasons of failures worth another try begin (the network, not a refusal: an unknown
#: host key or a refused key fails the same way every time)
TRANSIENT = ("device unreachable:", "ssh failed for")


def ssh_failure(stderr: str, profile) -> str | None:
    """One line saying why ssh itself failed (exit status 255), or None when ssh gave no reason
    (then the remote program died: ssh also exits 255 when it is killed by a signal)."""
    text = stderr.strip()
    last = text.splitlines()[-1].strip() if text else ""
    where = f"{profile.describe()}"
    known_hosts = profile.known_hosts
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "has changed and you have requested strict checking" in text:
        return (f"host key mismatch: the key {where} offers is not the one in {known_hosts}; refused. If the device "
                f"was really re-installed, verify its fingerprint and update the entry (ssh-keygen -R)")
    if "host key is known for" in text or ("Host key verification failed" in text and "No " in text):
        return (f"host key of {where} is not in {known_hosts}; refused (never accepted blindly): verify it and add it, "
                f"e.g. ssh-keyscan -p {profile.port} {profile.host} >> {known_hosts}")
    if "Host key verification failed" in text:
        return f"host key verification failed for {where} against {known_hosts}: {last}"
    if "Permission denied" in text:
        key = profile.identity_file or "ssh's default keys"
        return (f"authentication refused by {where} ({last.split(': ', 1)[-1]}) for key {key}; add its public key to "
                f"the device's ~/.ssh/authorized_keys")
    for marker, what in (("Connection refused", "connection refused"), ("timed out", "connection timed out"),
                         ("Could not resolve hostname", "cannot resolve host"), ("No route to host", "no route to host"),
                         ("Network is unreachable", "network unreachable"), ("Connection closed", "connection closed"),
                         ("closed by remote host", "connection closed by the device"),
                         ("Connection reset", "connection reset"), ("Broken pipe", "connection broken")):
        if marker in text:
            return f"device unreachable: {what} ({where}): {last}"
    if last.startswith("ssh:") or "ssh_exchange" in last or "kex_exchange" in last:
        return f"ssh failed for {where}: {last}"
    return None


class LocalConnection(Connection):
    """Runs the same argument lists on this machine, without ssh (the parity test's "device")."""

    def ssh_command(self, argv: list[str]) -> list[str]:
        return [str(word) for word in argv]


UPLOAD = """\
import json, os, shutil, sys, tarfile, tempfile
work = os.path.expanduser(sys.argv[1])
os.makedirs(work, exist_ok=True)
d = tempfile.mkdtemp(prefix="edgekit-", dir=work)
try:
    archive = tarfile.open(fileobj=sys.stdin.buffer, mode="r|")
    archive.extractall(d, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
except BaseException:
    shutil.rmtree(d, ignore_errors=True)
    raise
print(json.dumps(d))
"""

CLEANUP = """\
import os, shutil, sys
d = sys.argv[1]
if os.path.basename(d).startswith("edgekit-"):
    shutil.rmtree(d)
"""


def tar(files: dict[str, bytes | Path]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in files.items():
            data = content.read_bytes() if isinstance(content, Path) else content
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
