"""No network in tests: enforced for test code and for every notebook kernel."""
from __future__ import annotations

import socket
import urllib.error
import urllib.request

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.offline import NetworkBlockedError, is_local


def test_test_process_cannot_reach_the_internet():
    with pytest.raises(urllib.error.URLError) as caught:
        urllib.request.urlopen("http://example.com", timeout=5)
    assert isinstance(caught.value.reason, NetworkBlockedError)
    with pytest.raises(NetworkBlockedError):
        socket.create_connection(("93.184.215.14", 80), timeout=5)


def test_loopback_stays_open():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=5)
    client.close()
    server.close()


@pytest.mark.parametrize("host, local", [("localhost", True), ("127.0.0.1", True), ("::1", True),
                                         ("10.0.0.1", False), ("example.com", False)])
def test_is_local(host, local):
    assert is_local(host) is local


@pytest.mark.slow
def test_notebook_kernel_cannot_download():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import urllib.request\nurllib.request.urlopen('https://www.cs.toronto.edu/', timeout=5)")]
    with pytest.raises(CellExecutionError, match="NetworkBlockedError"):
        NotebookClient(nb, timeout=60, kernel_name="python3").execute()
