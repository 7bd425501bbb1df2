"""A browser push service and user agent in one, for tests: an aiohttp server on a
loopback port holding one subscription (P-256 key pair and auth secret). It decrypts
what it receives per RFC 8291 and checks the VAPID token per RFC 8292, written from the
RFCs with plain HMAC so it does not share code with the server's encryption."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from typing import Any

import attrs
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PATH = "/push/subscription-1"


def _unb64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


@attrs.frozen
class Received:
    message: dict[str, Any]
    headers: dict[str, str]
    jwt_claims: dict[str, Any]
    keyid: bytes  # the sender's ephemeral public key


class WebPushReceiver:
    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.public = self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        self.auth = os.urandom(16)
        self.received: list[Received] = []
        self.status = 201
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    @property
    def pushkey(self) -> str:
        return _b64(self.public)

    @property
    def auth_b64(self) -> str:
        return _b64(self.auth)

    def decrypt(self, body: bytes) -> bytes:
        # RFC 8188 header: salt(16) rs(4) idlen(1) keyid(idlen); RFC 8291 keyid = as_public.
        salt, rs, idlen = body[:16], int.from_bytes(body[16:20], "big"), body[20]
        as_public = body[21:21 + idlen]
        record = body[21 + idlen:]
        assert rs == 4096 and len(record) <= rs
        shared = self._key.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), as_public))
        # RFC 8291 section 3.4: HKDF extract with the auth secret, expand with key_info.
        prk_key = _hmac(self.auth, shared)
        ikm = _hmac(prk_key, b"WebPush: info\x00" + self.public + as_public + b"\x01")
        prk = _hmac(salt, ikm)
        cek = _hmac(prk, b"Content-Encoding: aes128gcm\x00\x01")[:16]
        nonce = _hmac(prk, b"Content-Encoding: nonce\x00\x01")[:12]
        padded = AESGCM(cek).decrypt(nonce, record, None)
        plaintext = padded.rstrip(b"\x00")
        assert plaintext.endswith(b"\x02"), "last record must use delimiter 0x02"
        return plaintext[:-1]

    @staticmethod
    def verify_vapid(authorization: str) -> dict[str, Any]:
        scheme, _, params = authorization.partition(" ")
        assert scheme == "vapid"
        fields = dict(p.strip().split("=", 1) for p in params.split(","))
        header_b64, claims_b64, sig_b64 = fields["t"].split(".")
        assert json.loads(_unb64(header_b64)) == {"typ": "JWT", "alg": "ES256"}
        signature = _unb64(sig_b64)
        assert len(signature) == 64
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _unb64(fields["k"]))
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                   int.from_bytes(signature[32:], "big"))
        # Raises InvalidSignature when the token was not signed by the `k` key.
        key.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        return json.loads(_unb64(claims_b64))  # type: ignore[no-any-return]

    async def _push(self, request: web.Request) -> web.Response:
        if self.status not in (200, 201):
            return web.Response(status=self.status)
        body = await request.read()
        self.received.append(Received(
            message=json.loads(self.decrypt(body)), headers=dict(request.headers),
            jwt_claims=self.verify_vapid(request.headers["Authorization"]),
            keyid=body[21:21 + body[20]]))
        return web.Response(status=self.status)

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post(PATH, self._push)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
