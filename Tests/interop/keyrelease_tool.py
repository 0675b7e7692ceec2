#!/usr/bin/env python3
"""Independent implementation of the key-release byte layouts (docs/key-release.md) with the
`cryptography` package (PyPI), for the KeyRelease tests.

Reads a JSON request on stdin, writes a JSON answer on stdout.
  wrap         {"cvmPrivate", "planePrivate", "transcript", "dataset", "root", "dek"} (hex)
               -> {"cvmPublic", "planePublic", "shared", "wrapKey", "wrapped"}
  unwrap       {"cvmPrivate", "planePublic", "transcript", "dataset", "root", "wrapped"} -> {"dek"}
  report-data  {"session", "nonce", "datasets": [[id, root]], "publicKey", "credentialHash"} -> {"reportData"}
  transcript   {"reportData", "cvmPublic", "planePublic", "plane" (hex20), "lease" (text)} -> {"exchange", "transcript"}
"""
import hashlib
import json
import struct
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def lp(s: str) -> bytes:
    """u8 length ‖ UTF-8."""
    b = s.encode()
    assert len(b) <= 255
    return bytes([len(b)]) + b


def datasets(ds) -> bytes:
    out = struct.pack(">I", len(ds))
    for ident, root in ds:
        out += lp(ident) + bytes.fromhex(root)
    return out


def raw_public(k) -> bytes:
    return k.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def wrap_key(shared: bytes, transcript: bytes, dataset: str, root: str) -> bytes:
    info = lp("cce4long/key-release/v1/wrap") + lp(dataset) + bytes.fromhex(root)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=transcript, info=info).derive(shared)


def main() -> None:
    cmd = sys.argv[1]
    req = json.load(sys.stdin)
    h = lambda k: bytes.fromhex(req[k])
    if cmd == "wrap":
        cvm = X25519PrivateKey.from_private_bytes(h("cvmPrivate"))
        plane = X25519PrivateKey.from_private_bytes(h("planePrivate"))
        shared = plane.exchange(cvm.public_key())
        assert shared == cvm.exchange(plane.public_key())
        k = wrap_key(shared, h("transcript"), req["dataset"], req["root"])
        wrapped = AESGCM(k).encrypt(bytes(12), h("dek"), None)
        out = {"cvmPublic": raw_public(cvm.public_key()).hex(), "planePublic": raw_public(plane.public_key()).hex(),
               "shared": shared.hex(), "wrapKey": k.hex(), "wrapped": wrapped.hex()}
    elif cmd == "unwrap":
        cvm = X25519PrivateKey.from_private_bytes(h("cvmPrivate"))
        shared = cvm.exchange(X25519PublicKey.from_public_bytes(h("planePublic")))
        k = wrap_key(shared, h("transcript"), req["dataset"], req["root"])
        out = {"dek": AESGCM(k).decrypt(bytes(12), h("wrapped"), None).hex()}
    elif cmd == "report-data":
        body = lp("cce4long/key-release/v1/report-data") + h("session") + h("nonce") + datasets(req["datasets"]) \
            + h("publicKey") + h("credentialHash")
        out = {"reportData": hashlib.sha512(body).hexdigest()}
    elif cmd == "transcript":
        ex = hashlib.sha256(lp("cce4long/key-release/v1/exchange") + h("reportData") + h("cvmPublic") + h("planePublic")
                            + h("plane")).digest()
        t = hashlib.sha256(lp("cce4long/key-release/v1/transcript") + ex
                           + hashlib.sha256(req["lease"].encode()).digest()).digest()
        out = {"exchange": ex.hex(), "transcript": t.hex()}
    else:
        raise SystemExit(f"unknown command {cmd}")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
