"""A throwaway self-signed certificate for 127.0.0.1/localhost, so the mock server can speak TLS.

Made with ``cryptography`` when it is installed, else with the ``openssl`` command.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ThrowawayCertificate"]


@dataclass(frozen=True)
class ThrowawayCertificate:
    """A certificate and key in a temp directory; the certificate is its own CA."""

    directory: Path

    @property
    def cert_path(self) -> Path:
        return self.directory / "cert.pem"

    @property
    def key_path(self) -> Path:
        return self.directory / "key.pem"

    @classmethod
    def create(cls) -> ThrowawayCertificate:
        made = cls(Path(tempfile.mkdtemp(prefix="pik-cert-")))
        try:
            made._write_with_cryptography()
        except ImportError:
            made._write_with_openssl()
        return made

    def _write_with_cryptography(self) -> None:
        from cryptography import x509  # noqa: PLC0415 - optional dependency
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
        from cryptography.x509.oid import NameOID  # noqa: PLC0415

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pytest-integration-kit")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(ipaddress.ip_address("::1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _write_with_openssl(self) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("HTTPS needs the cryptography package or the openssl command")
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-days", "1", "-subj", "/CN=pytest-integration-kit",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
                "-keyout", str(self.key_path), "-out", str(self.cert_path),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting only this certificate."""
        return ssl.create_default_context(cafile=str(self.cert_path))

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
