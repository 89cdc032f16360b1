"""The sshd fixture for every test here."""

from tests.targets.sshd import ssh_server  # noqa: F401 - registers the fixture
