#!/usr/bin/env python3
"""Independent Ethereum implementation for the Wallet tests: eth-account (PyPI).

Reads a JSON request on stdin, writes a JSON answer on stdout.
  sign        {"items": [{"key": hex, "message": hex}]} -> [{"address", "signature"}]
  recover     {"items": [{"message": hex, "signature": hex}]} -> [address]
  keccak      {"items": [hex]} -> [hex]
  checksum    {"items": [hex20]} -> [address]
  keystore-encrypt {"key": hex, "password": str, "kdf": "scrypt"|"pbkdf2", "iterations": int} -> keystore
  keystore-decrypt {"keystore": {...}, "password": str} -> {"key": hex}
  siwe-sign   {"items": [{"key": hex, "text": str}]} -> [signature hex]
  sign-tx     {"items": [{"key": hex, "tx": {chainId, nonce, maxPriorityFeePerGas, maxFeePerGas, gas, to|null, value, data}}]}
              -> [raw signed EIP-1559 transaction hex]
  sign-typed  {"items": [{"key": hex, "typed": eth_signTypedData_v4 JSON}]} -> [{"digest", "signature"}]
"""
import json
import sys

from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data, _hash_eip191_message
from eth_utils import keccak, to_checksum_address


def main() -> None:
    cmd = sys.argv[1]
    req = json.load(sys.stdin)
    if cmd == "sign":
        out = []
        for it in req["items"]:
            acct = Account.from_key(bytes.fromhex(it["key"]))
            sig = acct.sign_message(encode_defunct(primitive=bytes.fromhex(it["message"])))
            out.append({"address": acct.address, "signature": sig.signature.hex().removeprefix("0x")})
    elif cmd == "recover":
        out = [Account.recover_message(encode_defunct(primitive=bytes.fromhex(it["message"])),
                                       signature=bytes.fromhex(it["signature"])) for it in req["items"]]
    elif cmd == "keccak":
        out = [keccak(bytes.fromhex(h)).hex().removeprefix("0x") for h in req["items"]]
    elif cmd == "checksum":
        out = [to_checksum_address("0x" + h) for h in req["items"]]
    elif cmd == "keystore-encrypt":
        out = Account.encrypt(bytes.fromhex(req["key"]), req["password"], kdf=req["kdf"], iterations=req["iterations"])
    elif cmd == "keystore-decrypt":
        out = {"key": bytes(Account.decrypt(req["keystore"], req["password"])).hex()}
    elif cmd == "siwe-sign":
        out = [Account.from_key(bytes.fromhex(it["key"])).sign_message(encode_defunct(text=it["text"]))
               .signature.hex().removeprefix("0x") for it in req["items"]]
    elif cmd == "sign-tx":
        out = []
        for it in req["items"]:
            tx = dict(it["tx"], type=2, accessList=[])
            if tx.get("to") is None:
                tx.pop("to", None)
            tx["data"] = bytes.fromhex(tx["data"])
            out.append(Account.from_key(bytes.fromhex(it["key"])).sign_transaction(tx).raw_transaction.hex().removeprefix("0x"))
    elif cmd == "sign-typed":
        out = []
        for it in req["items"]:
            msg = encode_typed_data(full_message=it["typed"])
            sig = Account.from_key(bytes.fromhex(it["key"])).sign_message(msg)
            out.append({"digest": _hash_eip191_message(msg).hex().removeprefix("0x"),
                        "signature": sig.signature.hex().removeprefix("0x")})
    else:
        raise SystemExit(f"unknown command {cmd}")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
