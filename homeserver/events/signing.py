"""Signing JSON objects and events with ed25519 server keys.

Spec: https://spec.matrix.org/v1.19/appendices/#signing-json ,
https://spec.matrix.org/v1.19/appendices/#checking-for-a-signature and
https://spec.matrix.org/v1.19/server-server-api/#signing-events .
Keys and their (de)serialisation come from `signedjson`; the signed bytes are this
package's canonical JSON (events/canonical_json.py), several times faster than the one
`signedjson.sign` uses, and byte-identical to it.
"""

from __future__ import annotations

from typing import Any

import signedjson.key
from signedjson.types import SigningKey, VerifyKey
from unpaddedbase64 import decode_base64, encode_base64

from homeserver.events.canonical_json import encode_canonical_json
from homeserver.events.hashing import add_content_hash
from homeserver.events.redaction import redact_shared
from homeserver.events.room_versions import RoomVersion

JsonDict = dict[str, Any]

# Re-exported so callers (key server, key fetcher) need only this module.
get_verify_key = signedjson.key.get_verify_key
encode_verify_key_base64 = signedjson.key.encode_verify_key_base64
decode_verify_key_base64 = signedjson.key.decode_verify_key_base64
is_signing_algorithm_supported = signedjson.key.is_signing_algorithm_supported


class SignatureError(ValueError):
    """A signature is missing, malformed or does not verify."""


def key_id(verify_key: VerifyKey | SigningKey) -> str:
    """The signing key identifier, e.g. `ed25519:a_AbCd` (appendices#signing-details)."""
    return f"{verify_key.alg}:{verify_key.version}"


def generate_signing_key(version: str) -> SigningKey:
    """A fresh ed25519 signing key whose key ID will be `ed25519:<version>`."""
    return signedjson.key.generate_signing_key(version)


def encode_signing_key_base64(signing_key: SigningKey) -> str:
    """The key's 32-byte seed as unpadded base64."""
    return signedjson.key.encode_signing_key_base64(signing_key)


def decode_signing_key_base64(algorithm: str, version: str, key_base64: str) -> SigningKey:
    """A signing key from its unpadded-base64 seed; ValueError for an unknown algorithm."""
    return signedjson.key.decode_signing_key_base64(algorithm, version, key_base64)


_NOT_SIGNED = ("signatures", "unsigned")


def _signed_bytes(obj: JsonDict) -> bytes:
    """What a signature covers: the canonical JSON of `obj` without `signatures` and
    `unsigned` (appendices#signing-details)."""
    return encode_canonical_json({k: v for k, v in obj.items() if k not in _NOT_SIGNED})


def sign_json(obj: JsonDict, server_name: str, signing_key: SigningKey) -> JsonDict:
    """A copy of `obj` with this server's signature added (appendices#signing-details).

    Existing signatures are kept; `unsigned` is carried along but not signed.
    """
    signatures = obj.get("signatures", {})
    if not isinstance(signatures, dict):
        raise SignatureError("'signatures' is not an object")
    if not isinstance(signatures.get(server_name, {}), dict):
        raise SignatureError(f"'signatures.{server_name}' is not an object")
    signature = encode_base64(signing_key.sign(_signed_bytes(obj)).signature)
    # The caller's nested objects are copied, never added to.
    copied = {name: dict(sigs) if isinstance(sigs, dict) else sigs
              for name, sigs in signatures.items()}
    copied.setdefault(server_name, {})[key_id(signing_key)] = signature
    signed = {k: v for k, v in obj.items() if k not in _NOT_SIGNED}
    signed["signatures"] = copied
    unsigned = obj.get("unsigned")
    if unsigned is not None:
        signed["unsigned"] = unsigned
    return signed


def verify_json(obj: JsonDict, server_name: str, verify_key: VerifyKey) -> None:
    """Check `server_name`'s signature by `verify_key` (appendices#checking-for-a-signature).

    Raises SignatureError when the signature is absent, undecodable or wrong.
    """
    try:
        message, signature = _message_and_signature(obj, server_name, key_id(verify_key))
    except SignatureError:
        raise
    except (TypeError, AttributeError, ValueError) as e:
        # Malformed `signatures` (not objects) or JSON that cannot be canonicalised.
        raise SignatureError(f"unverifiable object: {e}") from e
    try:
        verify_key.verify(message, signature)
    except Exception as e:  # nacl's BadSignatureError, or ValueError for a bad length
        raise SignatureError(f"Unable to verify signature for {server_name}: {type(e)} {e}") from e


def _message_and_signature(obj: JsonDict, server_name: str, key: str) -> tuple[bytes, bytes]:
    try:
        signatures = obj["signatures"]
    except KeyError:
        raise SignatureError("No signatures on this object") from None
    try:
        signature_b64 = signatures[server_name][key]
    except KeyError:
        raise SignatureError(f"Missing signature for {server_name}, {key}") from None
    try:
        signature = decode_base64(signature_b64)
    except Exception:  # binascii.Error, or TypeError for a signature that is no string
        raise SignatureError(f"Invalid signature base64 for {server_name}, {key}") from None
    return _signed_bytes(obj), signature


def sign_event(
    pdu_json: JsonDict, room_version: RoomVersion, server_name: str, signing_key: SigningKey
) -> JsonDict:
    """A copy of the full event with this server's signature over its redacted form.

    Spec: https://spec.matrix.org/v1.19/server-server-api/#adding-hashes-and-signatures-to-outgoing-events .
    The content hash is added first when missing; an existing one is kept, so a server
    co-signing an event (send_join, restricted joins) never alters the sender's hash.
    """
    hashes = pdu_json.get("hashes")
    if isinstance(hashes, dict) and "sha256" in hashes:
        event = dict(pdu_json)
    else:
        event = add_content_hash(pdu_json)
    signed = sign_json(redact_shared(event, room_version), server_name, signing_key)
    event["signatures"] = signed["signatures"]
    return event


def verify_event_signature(
    pdu_json: JsonDict, room_version: RoomVersion, server_name: str, verify_key: VerifyKey
) -> None:
    """Check `server_name`'s signature over the redacted event; SignatureError if not.

    Spec: https://spec.matrix.org/v1.19/server-server-api/#validating-hashes-and-signatures-on-received-events .
    Works on the full event or on a redacted copy. Which servers must have signed (the
    sender's; in v1–2 also the event ID's domain) is the caller's decision.
    """
    if not isinstance(pdu_json, dict):
        raise SignatureError("event is not an object")
    verify_json(redact_shared(pdu_json, room_version), server_name, verify_key)
