"""SSH devices: profiles in devices/NAME.yaml, and running the standalone runner on them.

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
"""

from __future__ import annotations

import io
import json
import posixpath
import shlex
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgekit.errors import InputError, did_you_mean

#: Runtime names in profiles -> the module the runner imports for them.
RUNTIME_MODULES = {
    "litert": "ai_edge_litert",
    "tflite_runtime": "tflite_runtime",
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
}

#: Target names that are not devices; a profile cannot take them.
BUILTIN_TARGETS = ("cpu", "gpu")

RUNNER = Path(__file__).with_name("runner.py")
RUNNER_NAME = RUNNER.name


class DeviceProfileError(InputError):
    """A device profile is missing, not YAML, or does not match the schema (exit code 2)."""


class DeviceError(Exception):
    """Something went wrong talking to a device; the message is one line.

    Attributes:
        connection: True when the device could not be reached or refused us (host key,
            authentication, network): every later run would fail the same way.
    """

    def __init__(self, message: str, connection: bool = False):
        super().__init__(message)
        self.connection = connection


class DeviceProfile(BaseModel):
    """devices/NAME.yaml: how to reach a device and what it can run."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # NaN or infinity is never a valid setting

    host: str = Field(pattern=r"^[A-Za-z0-9_.:\[\]%][A-Za-z0-9_.:\[\]%-]*$", description="host name or address")
    port: int = Field(22, ge=1, le=65535)
    user: str | None = Field(None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", description="login user (default: ssh's)")
    identity_file: Path | None = Field(None, description="private key; relative to the profile file")
    known_hosts: Path = Field(Path("~/.ssh/known_hosts"), description="known_hosts file that must hold the device's host key")
    python: str = Field("python3", min_length=1, description="the device's Python (needs numpy and a runtime)")
    work_dir: str = Field("/tmp", min_length=1, description="folder on the device for per-run temporary folders (~ is the login user's home)")
    runtimes: list[Literal[tuple(RUNTIME_MODULES)]] = Field(  # type: ignore[valid-type]
        min_length=1, description=f"runtimes installed in that Python: {', '.join(RUNTIME_MODULES)}")
    connect_timeout_s: float = Field(10.0, gt=0, description="ssh ConnectTimeout")
    timeout_s: float = Field(900.0, gt=0, description="longest one remote step (upload, run, cleanup) may take")
    description: str | None = None

    _name: str = ""
    _path: Path | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def modules(self) -> list[str]:
        """Runtime modules in the profile's order."""
        return [RUNTIME_MODULES[r] for r in self.runtimes]

    def modules_for(self, runtime_packages: tuple[str, ...]) -> list[str]:
        """The profile's runtime modules that can run a format (``Format.runtime_packages``)."""
        return [m for m in runtime_packages if m in self.modules]

    def describe(self) -> str:
        return f"{self.destination}:{self.port}"


# --------------------------------------------------------------------------- profiles


def search_dirs(recipe_path: Path | None = None) -> list[Path]:
    """Where profiles are looked up: devices/ next to the recipe, then ./devices."""
    dirs = []
    if recipe_path is not None:
        dirs.append(Path(recipe_path).resolve().parent / "devices")
    dirs.append(Path.cwd() / "devices")
    return list(dict.fromkeys(dirs))


def find_profiles(dirs: list[Path]) -> dict[str, Path]:
    """Device name -> profile file, first folder wins; cpu and gpu are never devices."""
    found: dict[str, Path] = {}
    for folder in dirs:
        if not folder.is_dir():
            continue
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            if path.stem not in BUILTIN_TARGETS:
                found.setdefault(path.stem, path)
    return found


def load_profile(path: Path) -> DeviceProfile:
    """Read and validate one profile; relative paths are resolved against its folder.

    Raises:
        DeviceProfileError: one line naming the file, the field, what was expected and received.
    """
    from edgekit.errors import format_validation_error

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise DeviceProfileError(f"{path}: cannot read device profile: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise DeviceProfileError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(document, dict):
        raise DeviceProfileError(f"{path}: expected a mapping (host:, user:, runtimes:, ...), received {type(document).__name__}")
    try:
        profile = DeviceProfile.model_validate(document)
    except ValidationError as exc:
        message = format_validation_error(exc, DeviceProfile)
        if "unknown key" in message:  # the recipe's helper lists recipe keys; list the profile's
            key = message.split(":", 1)[0]
            message = (f"{key}: unknown key{did_you_mean(key, DeviceProfile.model_fields)}; allowed keys: "
                       f"{', '.join(DeviceProfile.model_fields)}")
        raise DeviceProfileError(f"{path}: {message}") from None
    base = path.resolve().parent
    if profile.identity_file is not None:
        profile.identity_file = _local_path(profile.identity_file, base)
    profile.known_hosts = _local_path(profile.known_hosts, base)
    profile._name, profile._path = path.stem, path.resolve()
    return profile


def _local_path(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def get_profile(name: str, dirs: list[Path]) -> DeviceProfile:
    """The profile called ``name`` in ``dirs``.

    Raises:
        DeviceProfileError: no such profile (with the names there are), or an invalid one.
    """
    profiles = find_profiles(dirs)
    if name not in profiles:
        where = " or ".join(str(d) for d in dirs)
        known = ", ".join(profiles) or "none"
        raise DeviceProfileError(f'unknown device "{name}"{did_you_mean(name, profiles)}: no {name}.yaml in {where} '
                                 f"(devices there: {known})")
    return load_profile(profiles[name])


def save_profiles(names: list[str], dirs: list[Path], folder: Path) -> None:
    """Write the profiles of the device targets among ``names`` into ``folder`` (a run's
    devices/), with their paths made absolute: the run's recipe.yaml copy then validates and
    rebuilds from the run directory, and the run records what each device was."""
    profiles = find_profiles(dirs)
    for name in names:
        if name in profiles:
            folder.mkdir(parents=True, exist_ok=True)
            document = load_profile(profiles[name]).model_dump(mode="json", exclude_none=True)
            (folder / f"{name}.yaml").write_text(f"# copied from {profiles[name]}\n" + yaml.safe_dump(document, sort_keys=False))


# --------------------------------------------------------------------------- ssh


@dataclass
class Completed:
    returncode: int
    stdout: bytes
    stderr: str


class Connection:
    """Runs argument lists on a device through the system ssh client."""

    def __init__(self, profile: DeviceProfile):
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
                              f"(raise timeout_s in {p.path.name if p.path else 'the profile'})")
        if proc.returncode == 255 and (reason := ssh_failure(stderr, p)):
            raise DeviceError(reason, connection=True)
        return Completed(proc.returncode, out, stderr)


def _program(argv: list[str]) -> str:
    return posixpath.basename(argv[-1] if argv and argv[0] == "-" else argv[0]) if argv else "ssh"


def _communicate(proc: subprocess.Popen, stdin: bytes | None, timeout: float, hold_stdin: bool):
    """Like Popen.communicate, but stdin may stay open until the process exits."""
    chunks: dict[str, bytes] = {}

    def drain(name, stream):
        chunks[name] = stream.read()

    readers = [threading.Thread(target=drain, args=(n, s), daemon=True) for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for reader in readers:
        reader.start()
    try:
        if stdin:
            proc.stdin.write(stdin)
        proc.stdin.flush()
        if not hold_stdin:
            proc.stdin.close()
    except BrokenPipeError:
        pass
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        timed_out = True
    finally:
        if not proc.stdin.closed:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
    for reader in readers:
        reader.join()
    return chunks.get("out", b""), chunks.get("err", b""), timed_out


def ssh_failure(stderr: str, profile: DeviceProfile) -> str | None:
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
                         ("Connection reset", "connection reset")):
        if marker in text:
            return f"device unreachable: {what} ({where}): {last}"
    if last.startswith("ssh:") or "ssh_exchange" in last or "kex_exchange" in last:
        return f"ssh failed for {where}: {last}"
    return None


# --------------------------------------------------------------------------- runs on a device

_UPLOAD = """\
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

_CLEANUP = """\
import os, shutil, sys
d = sys.argv[1]
if os.path.basename(d).startswith("edgekit-"):
    shutil.rmtree(d)
"""


def _tar(files: dict[str, bytes | Path]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in files.items():
            data = content.read_bytes() if isinstance(content, Path) else content
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _result(completed: Completed, what: str, profile: DeviceProfile) -> dict[str, Any]:
    """The runner's EDGEKIT-RESULT payload, or a DeviceError with the best one-line reason."""
    from edgekit.targets.runner import RESULT_MARKER

    lines = [line for line in completed.stdout.decode("utf-8", "replace").splitlines() if line.startswith(RESULT_MARKER)]
    if lines:
        payload = json.loads(lines[-1][len(RESULT_MARKER):])
        if "error" in payload:
            raise DeviceError(payload["error"])
        return payload
    return _no_result(completed, what, profile)


def _no_result(completed: Completed, what: str, profile: DeviceProfile):
    stderr = [line.strip() for line in completed.stderr.strip().splitlines() if line.strip()]
    last = stderr[-1] if stderr else ""
    if completed.returncode == 127:
        raise DeviceError(f"{profile.python!r} not found on the device ({last or 'exit status 127'}); "
                          f"set python: in {profile.path.name if profile.path else 'the profile'}")
    if "No module named 'numpy'" in last:
        raise DeviceError(f"{what} failed on the device: {last}; the runner needs numpy in {profile.python} "
                          "(pip install 'numpy<2' next to tflite-runtime)")
    if completed.returncode == 255 and not last:
        raise DeviceError(f"{what} ended without a result: the remote process was killed (ssh exit status 255, "
                          "no error from ssh)")
    raise DeviceError(f"{what} failed on the device (exit status {completed.returncode}): {last or 'no output'}")


def probe(profile: DeviceProfile) -> dict[str, Any]:
    """Connect and describe the device: Python, CPU, ISA flags, numpy, every runtime and the work dir.

    The runner is streamed to ``python -`` on stdin: nothing is written on the device.

    Raises:
        DeviceError: the device cannot be reached, or its Python cannot run the runner.
    """
    conn = Connection(profile)
    argv = [profile.python, "-", "--probe", "--work-dir", profile.work_dir,
            "--modules", ",".join(dict.fromkeys([*RUNTIME_MODULES.values()]))]
    completed = conn.run(argv, stdin=RUNNER.read_bytes(), timeout=profile.connect_timeout_s + 60)
    return _result(completed, "the probe", profile)


@dataclass
class RemoteRun:
    """What the runner sent back from a device."""

    runtime: str
    settings: dict[str, Any]
    input_shape: list[int]
    latencies_ms: list[float]
    outputs: np.ndarray | None
    environment: dict[str, Any]
    remote_dir: str


def run_artifact(profile: DeviceProfile, fmt: str, files: list[Path], modules: list[str], bench_inputs,
                 eval_inputs=None, *, warmup: int, runs: int, min_time_s: float = 0.0, threads: int = 1,
                 options: dict | None = None, log=None) -> RemoteRun:
    """Copy the runner, an artifact and its inputs to the device, run it there, read the result back.

    Args:
        profile: the device.
        fmt: the format name (tflite, onnx, openvino).
        files: the artifact's files; the first is the one the runtime opens.
        modules: runtime modules to try on the device, in order.
        bench_inputs: float32 samples cycled through by the timing loop.
        eval_inputs: float32 samples whose outputs come back (for metrics), or None.
        warmup, runs, min_time_s, threads: the timing loop's settings, as for local runs.
        options: runtime options (e.g. ONNX graph_optimization_level).

    Returns:
        The latencies, outputs, runtime and environment of the device.

    Raises:
        DeviceError: with a one-line reason; the temporary folder on the device is removed.
    """
    conn = Connection(profile)
    inputs = io.BytesIO()
    arrays = {"bench": np.asarray(bench_inputs, dtype=np.float32)}
    if eval_inputs is not None:
        arrays["eval"] = np.asarray(eval_inputs, dtype=np.float32)
    np.savez_compressed(inputs, **arrays)
    job = {"format": fmt, "model": f"model/{files[0].name}", "inputs": "inputs.npz", "threads": threads,
           "warmup": warmup, "runs": runs, "min_time_s": min_time_s, "modules": modules, "options": options or {}}
    payload = {RUNNER_NAME: RUNNER, "job.json": json.dumps(job).encode(), "inputs.npz": inputs.getvalue(),
               **{f"model/{f.name}": f for f in files}}
    uploaded = conn.run([profile.python, "-c", _UPLOAD, profile.work_dir], stdin=_tar(payload))
    if uploaded.returncode != 0:
        _no_result(uploaded, "copying files", profile)
    remote_dir = json.loads(uploaded.stdout.decode().strip().splitlines()[-1])
    if log:
        log(f"[device] {profile.name}: {files[0].name} -> {profile.describe()}:{remote_dir}")
    try:
        completed = conn.run([profile.python, posixpath.join(remote_dir, RUNNER_NAME), "--exit-on-stdin-eof",
                              posixpath.join(remote_dir, "job.json")], hold_stdin=True)
        result = _result(completed, "the runner", profile)
    finally:
        try:
            conn.run([profile.python, "-c", _CLEANUP, remote_dir], timeout=profile.connect_timeout_s + 30)
        except DeviceError as exc:  # the result stands; a leftover folder is only worth a line in the log
            if log:
                log(f"[device] {profile.name}: could not remove {remote_dir}: {exc}")
    from edgekit.targets.runner import decode_array

    return RemoteRun(
        runtime=result["runtime"], settings=result["settings"], input_shape=result["input_shape"],
        latencies_ms=result["latencies_ms"], environment=result["environment"], remote_dir=remote_dir,
        outputs=decode_array(result["outputs"]) if result.get("outputs") else None,
    )
