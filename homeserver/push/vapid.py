"""VAPID (RFC 8292): the server identifies itself to browser push services.

Each request carries `Authorization: vapid t=<JWT>, k=<public key>`; the JWT is ES256
signed with the server's long-lived VAPID key, its `aud` is the push service's origin.
The key must stay the same across restarts: push services may bind subscriptions to it.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from homeserver.push.webpush import b64url_encode

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

# `cryptography` is imported on first use (~8 MiB of resident memory that a server
# without web pushers never needs); the key file is parsed then too, and checked at
# start only for being a PEM private key, so a wrong path still fails at start.
PEM_PRIVATE_KEY = b"-----BEGIN PRIVATE KEY-----"

# RFC 8292 section 2: exp no more than 24 hours ahead; 12 h leaves room for clock skew.
TOKEN_LIFETIME_S = 12 * 60 * 60


def write_vapid_key(path: str) -> None:
    """A new P-256 key as PKCS#8 PEM, readable by the owner only; never overwrites."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


class VapidKey:
    def __init__(self, path: str, contact: str | None = None):
        self._path = path
        self._contact = contact
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._public_key: str | None = None

    @classmethod
    def load_or_create(cls, path: str, contact: str | None = None) -> VapidKey:
        """Created on first start when missing, so configs older than web push work."""
        if not os.path.exists(path):
            try:
                write_vapid_key(path)
            except FileExistsError:
                pass  # another process starting at the same time made it: use theirs
        with open(path, "rb") as f:
            if PEM_PRIVATE_KEY not in f.read():
                raise ValueError(f"{path}: not a PEM (PKCS#8) private key")
        return cls(path, contact)

    def _private_key(self) -> ec.EllipticCurvePrivateKey:
        if self._key is None:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import ec

            with open(self._path, "rb") as f:
                key = serialization.load_pem_private_key(f.read(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
                raise ValueError(f"{self._path}: not a P-256 private key")
            self._key = key
        return self._key

    @property
    def public_key(self) -> str:
        if self._public_key is None:
            from cryptography.hazmat.primitives import serialization

            self._public_key = b64url_encode(self._private_key().public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))
        return self._public_key

    def authorization(self, endpoint: str, now_s: int) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        parts = urlsplit(endpoint)
        claims: dict[str, object] = {"aud": f"{parts.scheme}://{parts.netloc}",
                                     "exp": now_s + TOKEN_LIFETIME_S}
        if self._contact is not None:
            claims["sub"] = self._contact
        signing_input = ".".join(
            b64url_encode(json.dumps(part, separators=(",", ":")).encode())
            for part in ({"typ": "JWT", "alg": "ES256"}, claims))
        der = self._private_key().sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        # JWS wants r || s as two 32-byte big-endian numbers, not the DER sequence.
        r, s = decode_dss_signature(der)
        signature = b64url_encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        return f"vapid t={signing_input}.{signature}, k={self.public_key}"
