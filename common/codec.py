"""Payload encryption for Temporal's event history: AES-256-GCM, keys from `SESSIONS_PAYLOAD_KEYS`.

Off by default. With `SESSIONS_PAYLOAD_KEYS="k2:<base64 32 bytes>,k1:<base64 32 bytes>"` every
payload a client or worker built by `connect_temporal` writes (workflow inputs such as the
sandbox's env vars, signals, updates, results, activity inputs) is encrypted with the first key;
any listed key decrypts. The key id travels in the payload's metadata (`encryption-key-id`), so
keys rotate by putting a new one first and dropping an old one only once no history needs it.
Failure messages are encrypted too. Payloads without the encrypted encoding pass through, so
histories written before encryption was turned on stay readable. The format is the one of
Temporal's encryption sample (12-byte nonce + AES-GCM ciphertext of the serialized payload).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from common.errors import ConfigError, SessionsError
from common.payloads import TolerantPayloadConverter
from common.settings import KEY_ID_RE, KEYS_ENV, parse_keys

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
_NONCE_BYTES = 12
_TAG_BYTES = 16

__all__ = [
    "ENCODING",
    "KEYS_ENV",
    "KEY_ID",
    "EncryptionCodec",
    "PayloadKeyError",
    "codec_for",
    "data_converter",
    "parse_keys",
]


class PayloadKeyError(SessionsError):
    """A payload cannot be decrypted: its key id is not configured, the key is wrong, or the
    payload is corrupted (too short, or not a payload once decrypted)."""


class EncryptionCodec(PayloadCodec):
    """Encrypts with the first key, decrypts with whichever key id a payload names."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        super().__init__()
        if not keys:
            raise ConfigError(f"{KEYS_ENV}: at least one key is needed")
        self.key_id = keys[0][0]
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._ciphers[self.key_id]
        out = []
        for p in payloads:
            nonce = os.urandom(_NONCE_BYTES)
            data = nonce + cipher.encrypt(nonce, p.SerializeToString(), None)
            out.append(
                Payload(metadata={"encoding": ENCODING, KEY_ID: self.key_id.encode()}, data=data)
            )
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decode_one(p) for p in payloads]

    def _decode_one(self, p: Payload) -> Payload:
        if p.metadata.get("encoding", b"") != ENCODING:
            return p  # written before encryption was on, or by a client without it
        key_id = p.metadata.get(KEY_ID, b"").decode(errors="replace")
        # Only a well-formed id is quoted: the metadata may come from anyone (the codec server).
        named = f"key id {key_id!r}" if KEY_ID_RE.match(key_id) else "a malformed key id"
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadKeyError(
                f"cannot decrypt a payload encrypted with {named}: {KEYS_ENV} has "
                f"{', '.join(repr(k) for k in self._ciphers)}; add that key (after the first)"
            )
        if len(p.data) < _NONCE_BYTES + _TAG_BYTES:
            raise PayloadKeyError(
                f"cannot decrypt a payload with {named}: it is too short to be an encrypted "
                "payload (corrupted)"
            )
        try:
            plain = cipher.decrypt(p.data[:_NONCE_BYTES], p.data[_NONCE_BYTES:], None)
        except InvalidTag:
            raise PayloadKeyError(
                f"cannot decrypt a payload with {named}: the key configured under "
                "that id is not the one that encrypted it, or the payload is corrupted"
            ) from None
        try:
            return Payload.FromString(plain)
        except DecodeError:
            raise PayloadKeyError(
                f"cannot decrypt a payload with {named}: it decrypts to no payload (corrupted)"
            ) from None


def codec_for(keys: str | None) -> EncryptionCodec | None:
    """The codec for `SESSIONS_PAYLOAD_KEYS`' value, or None when it is unset or empty."""
    if keys is None or not keys.strip():
        return None
    return EncryptionCodec(parse_keys(keys.strip()))


_PLAIN = DataConverter(payload_converter_class=TolerantPayloadConverter)


def data_converter(keys: str | None = None) -> DataConverter:
    """The pydantic data converter, encrypting payloads when `keys` (`SESSIONS_PAYLOAD_KEYS`) are
    given.

    Failures' messages and stack traces are then encrypted too (they can quote what a command
    printed); their type and retry flags stay readable for Temporal's retry policies.
    """
    codec = codec_for(keys)
    if codec is None:
        return _PLAIN
    return dataclasses.replace(
        _PLAIN,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
