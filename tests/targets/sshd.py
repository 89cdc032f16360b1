"""A real OpenSSH server on 127.0.0.1 for the device tests (tests/targets, tests/contracts).

It needs /usr/sbin/sshd, the ssh client and a device Python (EDGEKIT_TEST_DEVICE_PYTHON, default
.device-venv/bin/python: numpy<2 and tflite-runtime 2.14 only); .ci/run provides all three and
the fixture skips cleanly without them.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEVICE_PYTHON = os.environ.get("EDGEKIT_TEST_DEVICE_PYTHON") or str(ROOT / ".device-venv" / "bin" / "python")


def device_python() -> str:
    if not Path(DEVICE_PYTHON).exists():
        if os.environ.get("EDGEKIT_TEST_DEVICE_PYTHON"):  # asked for explicitly (.ci/run): a broken setup fails
            pytest.fail(f"EDGEKIT_TEST_DEVICE_PYTHON={DEVICE_PYTHON} does not exist")
        pytest.skip(f"no device Python at {DEVICE_PYTHON} (set EDGEKIT_TEST_DEVICE_PYTHON; .ci/run makes .device-venv)")
    return DEVICE_PYTHON


@dataclass
class SSHServer:
    root: Path
    port: int
    user: str
    user_key: Path
    stranger_key: Path
    known_hosts: Path
    wrong_known_hosts: Path
    python: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory):
    """sshd on 127.0.0.1 at a free port, with its own host key and authorized key."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd).exists() or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        pytest.skip("OpenSSH server and client not installed (apt-get install openssh-server openssh-client; .ci/run does)")
    python = device_python()
    root = tmp_path_factory.mktemp("sshd")
    host_public = keygen(root / "host_key")
    user_public = keygen(root / "user_key")
    keygen(root / "stranger_key")  # a key the server does not know
    impostor_public = keygen(root / "impostor_host_key")  # what a man in the middle would offer
    (root / "authorized_keys").write_text(user_public + "\n")
    port = free_port()
    config = root / "sshd_config"
    config.write_text("\n".join([
        "ListenAddress 127.0.0.1", f"Port {port}", f"HostKey {root / 'host_key'}",
        f"AuthorizedKeysFile {root / 'authorized_keys'}", f"PidFile {root / 'sshd.pid'}",
        "UsePAM no", "StrictModes no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes", "PermitRootLogin prohibit-password", "UseDNS no", "PrintMotd no",
        "PrintLastLog no", "MaxStartups 50", "",
    ]))
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation directory
    log = open(root / "sshd.log", "w")  # noqa: SIM115 - the server writes to it until stopped
    server = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        if server.poll() is not None:
            pytest.fail(f"sshd did not start: {(root / 'sshd.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                pytest.fail("sshd did not listen within 15 s")
            time.sleep(0.1)
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_public}\n")
    (root / "wrong_known_hosts").write_text(f"[127.0.0.1]:{port} {impostor_public}\n")
    yield SSHServer(root, port, getpass.getuser(), root / "user_key", root / "stranger_key", root / "known_hosts",
                    root / "wrong_known_hosts", python)
    server.terminate()
    server.wait(timeout=10)
    log.close()


def device_profile(folder: Path, name: str, server: SSHServer, **overrides) -> Path:
    doc = {"host": "127.0.0.1", "port": server.port, "user": server.user, "identity_file": str(server.user_key),
           "known_hosts": str(server.known_hosts), "python": server.python,
           "work_dir": str(server.root / "work" / name), "runtimes": ["tflite_runtime"],
           "connect_timeout_s": 5, "timeout_s": 120}
    doc.update({k: str(v) if isinstance(v, Path) else v for k, v in overrides.items()})
    (folder / "devices").mkdir(parents=True, exist_ok=True)
    path = folder / "devices" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path
