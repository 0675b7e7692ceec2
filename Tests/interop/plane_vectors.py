"""Independent derivation of the Privacy Plane vectors (docs/plane.md §Keys): Python
cryptography HKDF and eth-account, for PlaneTests.VectorTests. KEK = bytes 0..31."""
import hashlib
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes
from eth_account import Account
def hkdf(ikm, salt, info): return HKDF(hashes.SHA256(), 32, salt, info).derive(ikm)
kek = bytes(range(32))
for c in range(256):
    d = hkdf(kek, b"cce4-plane-v1", f"identity-secp256k1/{c}".encode())
    if 0 < int.from_bytes(d, "big") < 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141: break
print("identity", Account.from_key(d).address)
kt = hkdf(kek, b"cce4-plane-v1", b"token-mac")
body = "cce4pt1." + bytes(range(0xa0, 0xb4)).hex() + ".2000000000"
print("token", body + "." + hkdf(kt, None, hashlib.sha256(body.encode()).digest()).hex())
kn = hkdf(kek, b"cce4-plane-v1", b"siwe-nonce-mac")
print("nonce-mac", hkdf(kn, None, hashlib.sha256(("cce4-siwe-nonce-v1|2000000000" + "00"*12).encode()).digest())[:16].hex())
