"""A throwaway certificate authority and a server certificate it issued, so the mock server
can speak TLS that every client accepts.

Made with trustme: a CA certificate (what clients trust) and a separate end-entity
certificate for ``127.0.0.1``, ``::1`` and ``localhost`` with the extensions strict
verifiers want (rustls refuses a self-signed certificate that is its own CA; OpenSSL's
``VERIFY_X509_STRICT`` wants key identifiers). Files live in a private temp directory.
"""

from __future__ import annotations

import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ThrowawayCertificate"]

#: The names the server certificate is valid for: the mock server's own addresses.
IDENTITIES = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class ThrowawayCertificate:
    """A CA (``ca_path``) and the server's certificate chain and key, in a temp directory."""

    directory: Path

    @property
    def ca_path(self) -> Path:
        """The CA certificate: what a client trusts (``verify=``, ``--cacert``)."""
        return self.directory / "ca.pem"

    @property
    def cert_path(self) -> Path:
        """The server's certificate chain (the server certificate, then its CA)."""
        return self.directory / "server.pem"

    @property
    def key_path(self) -> Path:
        return self.directory / "server.key"

    @classmethod
    def create(cls) -> ThrowawayCertificate:
        import trustme  # noqa: PLC0415 - part of the optional "http" extra

        made = cls(Path(tempfile.mkdtemp(prefix="pik-cert-")))  # 0700, ours alone
        try:
            authority = trustme.CA(organization_name="pytest-integration-kit")
            issued = authority.issue_cert(*IDENTITIES)
            authority.cert_pem.write_to_path(str(made.ca_path))
            issued.private_key_pem.write_to_path(str(made.key_path))
            for index, blob in enumerate(issued.cert_chain_pems):
                blob.write_to_path(str(made.cert_path), append=index > 0)
        except BaseException:
            made.remove()
            raise
        return made

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting only this CA."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
