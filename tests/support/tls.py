"""Throwaway TLS material for tests: a CA and a server certificate for loopback."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

__all__ = ["TlsFiles", "make_tls_files", "tls_query"]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files written by :func:`make_tls_files`.

    Attributes:
        ca_file: The CA certificate clients trust (``ssl_ca_certs``).
        cert_file: The server certificate chain, valid for 127.0.0.1, ::1 and localhost.
        key_file: The server's private key.
        client_cert_file: A client certificate signed by the same CA (for mutual TLS).
        client_key_file: The client certificate's private key.
    """

    ca_file: str
    cert_file: str
    key_file: str
    client_cert_file: str
    client_key_file: str

    def server_context(self) -> ssl.SSLContext:
        """Build a server-side context that presents the server certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Build a client-side context that trusts only the test CA."""
        return ssl.create_default_context(cafile=self.ca_file)


def make_tls_files(directory: str | Path) -> TlsFiles:
    """Create a fresh CA plus server and client certificates (with ``trustme``).

    Args:
        directory: An existing folder; the PEM files are written into it.

    Returns:
        The paths of the files written.
    """
    import trustme  # a dev dependency; imported here so servers.py works without it

    folder = Path(directory)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "::1", "localhost")
    client = ca.issue_cert("redisq-test-client")
    files = TlsFiles(
        ca_file=str(folder / "ca.pem"),
        cert_file=str(folder / "server.crt"),
        key_file=str(folder / "server.key"),
        client_cert_file=str(folder / "client.crt"),
        client_key_file=str(folder / "client.key"),
    )
    ca.cert_pem.write_to_path(files.ca_file)
    server.private_key_pem.write_to_path(files.key_file)
    # The chain: leaf first, then the (empty for trustme) intermediates.
    Path(files.cert_file).write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    client.private_key_pem.write_to_path(files.client_key_file)
    Path(files.client_cert_file).write_bytes(
        b"".join(blob.bytes() for blob in client.cert_chain_pems)
    )
    return files


def tls_query(files: TlsFiles, *, client_cert: bool = True, ca_file: str | None = None) -> str:
    """Return the query string (``?ssl_ca_certs=...``) that gives redis-py the TLS files.

    Args:
        files: The CA (and client certificate) to name.
        client_cert: Also name the client certificate and key (for mutual TLS).
        ca_file: Trust this CA file instead of ``files.ca_file``.
    """
    params = {"ssl_ca_certs": ca_file or files.ca_file}
    if client_cert:
        params["ssl_certfile"] = files.client_cert_file
        params["ssl_keyfile"] = files.client_key_file
    return "?" + urlencode(params)
