#!/usr/bin/env python3
"""Contract tests for contracts/Rentals.vy and contracts/Audit.vy on the evm-devnet.

Independent of the Swift engine: transactions are built and signed by eth-account, calls are
ABI-encoded by eth_abi, EIP-712 approvals are signed with eth-account's encode_typed_data.
Covers authorization (owner, operators, allow-listed writers) and the expiry boundaries
(expires == block.timestamp, and one second either side, set with evm_mine(ts)).

  .venv/bin/python Tests/interop/contract_tests.py [-v]    (starts ../shared/tools/evm-devnet)
Run by `swift test` (EVMLedgerTests.contractSuite) and so by `make test`.
"""
import json
import os
import pathlib
import subprocess
import sys
import unittest
import urllib.request

from eth_abi import decode, encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEVNET = pathlib.Path(os.environ.get("CCE4_SHARED") or ROOT.parent / "shared") / "tools" / "evm-devnet"
BUILD = ROOT / "contracts" / "build"
ZERO = "0x" + "00" * 20


class Reverted(Exception):
    pass


class Chain:
    def __init__(self):
        script = f'source "{DEVNET}/start.sh" >&2 && cat "$EVM_READY_FILE"'
        out = subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True, cwd=ROOT)
        self.info = json.loads(out.stdout)
        self.url = self.info["url"]
        self.keys = list(self.info["accounts"].values())
        self.id = 0

    def stop(self):
        # SIGKILL: the devnet does not always stop on SIGTERM, and holds nothing to save (memory only).
        os.kill(self.info["pid"], 9)

    def rpc(self, method, *params):
        self.id += 1
        req = urllib.request.Request(self.url, json.dumps({"jsonrpc": "2.0", "id": self.id, "method": method, "params": list(params)}).encode(),
                                     {"content-type": "application/json"})
        ans = json.load(urllib.request.urlopen(req, timeout=30))
        if "error" in ans:
            if ans["error"].get("code") == 3:
                raise Reverted(ans["error"]["message"])
            raise RuntimeError(f"{method}: {ans['error']}")
        return ans["result"]

    def now(self):
        return int(self.rpc("eth_getBlockByNumber", "latest", False)["timestamp"], 16)

    def send(self, key, to, data, gas=None):
        acct = Account.from_key(key)
        tx = {"chainId": self.info["chainId"], "nonce": int(self.rpc("eth_getTransactionCount", acct.address, "latest"), 16),
              "maxPriorityFeePerGas": 10**9, "maxFeePerGas": 10**11, "data": data, "type": 2, "value": 0}
        if to:
            tx["to"] = to
        est = {"from": acct.address, "data": data, **({"to": to} if to else {})}
        tx["gas"] = gas or int(self.rpc("eth_estimateGas", est), 16) * 12 // 10  # reverts raise here, with the reason
        raw = acct.sign_transaction(tx).raw_transaction
        h = self.rpc("eth_sendRawTransaction", "0x" + raw.hex())
        r = self.rpc("eth_getTransactionReceipt", h)
        if r["status"] != "0x1":
            raise Reverted("mined with status 0")
        return r

    def call(self, to, data, block="latest"):
        return bytes.fromhex(self.rpc("eth_call", {"to": to, "data": data}, block)[2:])


def calldata(sig, *args):
    types = sig[sig.index("(") + 1:-1]
    types = [t for t in types.split(",") if t] if types else []
    return "0x" + (keccak(text=sig)[:4] + encode(types, list(args))).hex()


class Contracts(unittest.TestCase):
    chain: Chain

    @classmethod
    def setUpClass(cls):
        cls.chain = Chain()

    @classmethod
    def tearDownClass(cls):
        cls.chain.stop()

    def setUp(self):
        c = self.chain
        self.owner, self.alice, self.bob, self.mallory, self.op = c.keys[1:6]
        self.addr = {k: Account.from_key(k).address for k in c.keys}
        rentals = json.loads((BUILD / "Rentals.json").read_text())
        audit = json.loads((BUILD / "Audit.json").read_text())
        self.rentals = c.send(c.keys[0], None, rentals["bytecode"])["contractAddress"]
        self.audit = c.send(c.keys[0], None, audit["bytecode"] + encode(["address"], [self.rentals]).hex())["contractAddress"]

    # helpers
    def tx(self, key, sig, *args, to=None):
        return self.chain.send(key, to or self.rentals, calldata(sig, *args))

    def view(self, sig, out, *args, to=None):
        return decode(out, self.chain.call(to or self.rentals, calldata(sig, *args)))

    def refused(self, reason, key, sig, *args, to=None):
        with self.assertRaises(Reverted) as cm:
            self.tx(key, sig, *args, to=to)
        self.assertIn(reason, str(cm.exception))

    def register(self, name="aging", key=None, owner=None):
        key = key or self.owner
        self.tx(key, "register(string,bytes32,address)", name, b"\x07" * 32, owner or self.addr[key])
        return int.from_bytes(keccak(text=name), "big")

    def rent(self, ds, user, expires, key=None):
        r = self.tx(key or self.owner, "rent(uint256,address,uint64)", ds, user, expires)
        return int(r["logs"][0]["topics"][3], 16)  # Transfer(0, owner, id)

    def user_of(self, rid):
        return to_checksum_address(self.view("userOf(uint256)", ["address"], rid)[0])

    # tests
    def test_interfaces(self):
        for iid, want in [(b"\xad\x09\x2b\x5c", True), (b"\x80\xac\x58\xcd", True), (b"\x01\xff\xc9\xa7", True), (b"\xff\xff\xff\xff", False)]:
            self.assertEqual(self.view("supportsInterface(bytes4)", ["bool"], iid)[0], want)
        # 0xad092b5c is the XOR of ERC-4907's three selectors
        x = 0
        for s in ["setUser(uint256,address,uint64)", "userOf(uint256)", "userExpires(uint256)"]:
            x ^= int.from_bytes(keccak(text=s)[:4], "big")
        self.assertEqual(x, 0xad092b5c)

    def test_registry_owner_only(self):
        ds = self.register()
        self.assertEqual(to_checksum_address(self.view("ownerOf(uint256)", ["address"], ds)[0]), self.addr[self.owner])
        self.assertEqual(self.view("policyHash(uint256)", ["bytes32"], ds)[0], b"\x07" * 32)
        self.refused("already registered", self.owner, "register(string,bytes32,address)", "aging", b"\x07" * 32, self.addr[self.owner])
        self.refused("not the owner nor an operator", self.mallory, "register(string,bytes32,address)", "other", b"\x07" * 32, self.addr[self.owner])
        self.refused("only the owner of the dataset", self.mallory, "addVersion(uint256,bytes32)", ds, b"\x01" * 32)
        self.refused("zeros", self.owner, "addVersion(uint256,bytes32)", ds, b"\x00" * 32)
        self.tx(self.owner, "addVersion(uint256,bytes32)", ds, b"\x01" * 32)
        self.refused("already a version", self.owner, "addVersion(uint256,bytes32)", ds, b"\x01" * 32)
        self.tx(self.owner, "addVersion(uint256,bytes32)", ds, b"\x02" * 32)
        self.assertEqual(self.view("versionRoots(uint256,uint256)", ["bytes32[]"], ds, 0)[0], (b"\x01" * 32, b"\x02" * 32))
        self.refused("not registered", self.owner, "addVersion(uint256,bytes32)", ds + 1, b"\x01" * 32)
        self.refused("not registered", self.owner, "rent(uint256,address,uint64)", ds + 1, self.addr[self.alice], 2**40)

    def test_rental_expiry_boundaries(self):
        c = self.chain
        ds = self.register()
        alice = self.addr[self.alice]
        t = c.now() + 100
        # expires == the block's timestamp is refused; one second later is accepted
        c.rpc("evm_setNextBlockTimestamp", t)
        with self.assertRaises(Reverted):  # estimateGas sees the latest block, so force the gas
            self.chain.send(self.owner, self.rentals, calldata("rent(uint256,address,uint64)", ds, alice, t), gas=400_000)
        c.rpc("evm_setNextBlockTimestamp", t + 1)
        rid = self.rent(ds, alice, t + 11)
        self.assertEqual(self.view("userExpires(uint256)", ["uint256"], rid)[0], t + 11)
        for ts, want in [(t + 10, alice), (t + 11, ZERO), (t + 12, ZERO)]:
            c.rpc("evm_mine", ts)
            self.assertEqual(self.user_of(rid), want, f"block time {ts}, expires {t + 11}")
        # eth_call at an older block sees that block's time
        n = int(c.rpc("eth_blockNumber"), 16)
        self.assertEqual(to_checksum_address(decode(["address"], c.call(self.rentals, calldata("userOf(uint256)", rid), hex(n - 2)))[0]), alice)
        self.refused("already ended or expired", self.owner, "endRental(uint256)", rid)
        self.refused("at or before", self.owner, "rent(uint256,address,uint64)", ds, alice, c.now())
        self.refused("zero address", self.owner, "rent(uint256,address,uint64)", ds, ZERO, c.now() + 100)

    def test_rentals_owner_only_end_and_transfer(self):
        c = self.chain
        ds = self.register()
        alice, bob = self.addr[self.alice], self.addr[self.bob]
        self.refused("only the owner of the dataset", self.mallory, "rent(uint256,address,uint64)", ds, alice, c.now() + 1000)
        r1 = self.rent(ds, alice, c.now() + 1000)
        r2 = self.rent(ds, bob, c.now() + 1000)
        self.assertEqual((r1, r2), (1, 2))
        self.refused("only the owner of the dataset", self.mallory, "setUser(uint256,address,uint64)", r1, self.addr[self.mallory], c.now() + 1000)
        self.refused("only the owner of the dataset", self.alice, "endRental(uint256)", r1)
        self.refused("no such rental", self.owner, "setUser(uint256,address,uint64)", ds, alice, c.now() + 1000)
        r = self.tx(self.owner, "endRental(uint256)", r1)
        upd = keccak(text="UpdateUser(uint256,address,uint64)").hex()
        self.assertTrue(any(l["topics"][0][2:] == upd and int(l["topics"][1], 16) == r1 for l in r["logs"]))
        self.assertEqual(self.user_of(r1), ZERO)
        self.refused("already ended", self.owner, "endRental(uint256)", r1)
        rows = self.view("rentals(uint256,uint256)", ["(uint256,address,uint64)[]"], ds, 0)[0]
        self.assertEqual([(x[0], to_checksum_address(x[1])) for x in rows], [(1, ZERO), (2, bob)])
        # a transfer of the rental token ends its rental (ERC-4907 reference behaviour)
        self.assertEqual(self.user_of(r2), bob)
        r = self.tx(self.owner, "transferFrom(address,address,uint256)", self.addr[self.owner], self.addr[self.mallory], r2)
        self.assertTrue(any(l["topics"][0][2:] == upd and int(l["topics"][1], 16) == r2 and int(l["topics"][2], 16) == 0 for l in r["logs"]))
        self.assertEqual(self.user_of(r2), ZERO)
        self.assertEqual(to_checksum_address(self.view("ownerOf(uint256)", ["address"], r2)[0]), self.addr[self.mallory])
        self.refused("not the owner", self.bob, "transferFrom(address,address,uint256)", self.addr[self.mallory], bob, r2)

    def typed(self, owner, operator, expires, nonce):
        return {"types": {"EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                                           {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"},
                                           {"name": "salt", "type": "bytes32"}],
                          "OperatorApproval": [{"name": "owner", "type": "address"}, {"name": "operator", "type": "address"},
                                               {"name": "expires", "type": "uint64"}, {"name": "nonce", "type": "uint64"}]},
                "primaryType": "OperatorApproval",
                "domain": {"name": "cce4long", "version": "1", "chainId": self.chain.info["chainId"], "verifyingContract": self.rentals, "salt": b"\x00" * 32},
                "message": {"owner": owner, "operator": operator, "expires": expires, "nonce": nonce}}

    def approve_by_sig(self, signer, owner, operator, expires, nonce, submitter=None):
        sig = Account.from_key(signer).sign_message(encode_typed_data(full_message=self.typed(owner, operator, expires, nonce)))
        return self.tx(submitter or self.mallory, "approveOperatorBySig(address,address,uint64,uint64,uint8,bytes32,bytes32)",
                       owner, operator, expires, nonce, sig.v, sig.r.to_bytes(32, "big"), sig.s.to_bytes(32, "big"))

    def test_operator_approvals(self):
        c = self.chain
        owner, op, alice = self.addr[self.owner], self.addr[self.op], self.addr[self.alice]
        # the domain separator is eth-account's
        from eth_account._utils.encode_typed_data.encoding_and_hashing import hash_domain
        self.assertEqual(self.view("domainSeparator()", ["bytes32"])[0], hash_domain(self.typed(owner, op, 0, 0)["domain"]))
        # plain setApprovalForAll
        self.tx(self.owner, "setApprovalForAll(address,bool)", op, True)
        self.assertTrue(self.view("isApprovedForAll(address,address)", ["bool"], owner, op)[0])
        ds = self.register(key=self.op, owner=owner)  # an operator registers for the owner
        self.assertEqual(to_checksum_address(self.view("ownerOf(uint256)", ["address"], ds)[0]), owner)
        self.rent(ds, alice, c.now() + 1000, key=self.op)
        self.tx(self.owner, "setApprovalForAll(address,bool)", op, False)
        self.refused("only the owner of the dataset", self.op, "rent(uint256,address,uint64)", ds, alice, c.now() + 1000)
        # by signature (anyone submits); expiry boundary
        t = c.now() + 50
        self.approve_by_sig(self.owner, owner, op, t, 1)
        self.assertEqual(self.view("approvalNonce(address)", ["uint64"], owner)[0], 1)
        with self.assertRaises(Reverted):  # replayed nonce
            self.approve_by_sig(self.owner, owner, op, t, 1)
        with self.assertRaises(Reverted):  # not the owner's signature
            self.approve_by_sig(self.mallory, owner, op, t, 2)
        with self.assertRaises(Reverted):  # already expired
            self.approve_by_sig(self.owner, owner, op, c.now(), 2)
        c.rpc("evm_setNextBlockTimestamp", t - 1)
        self.tx(self.op, "addVersion(uint256,bytes32)", ds, b"\x05" * 32)  # at expires - 1: still an operator
        c.rpc("evm_setNextBlockTimestamp", t)
        with self.assertRaises(Reverted):  # at expires: no longer
            c.send(self.op, self.rentals, calldata("addVersion(uint256,bytes32)", ds, b"\x06" * 32), gas=300_000)
        self.assertFalse(self.view("isApprovedForAll(address,address)", ["bool"], owner, op)[0])
        # re-approve, then revoke with expires = 0
        self.approve_by_sig(self.owner, owner, op, c.now() + 1000, 5)
        self.tx(self.op, "addVersion(uint256,bytes32)", ds, b"\x06" * 32)
        self.approve_by_sig(self.owner, owner, op, 0, 6)
        self.refused("only the owner of the dataset", self.op, "addVersion(uint256,bytes32)", ds, b"\x08" * 32)

    def test_audit_writers(self):
        c = self.chain
        ds = self.register()
        self.refused("not an allow-listed", self.mallory, "record(string,string,bytes32)", "key.release", "aging", b"\x09" * 32, to=self.audit)
        self.refused("only the audit contract's admin", self.mallory, "setWriter(address,bool)", self.addr[self.mallory], True, to=self.audit)
        self.tx(c.keys[0], "setWriter(address,bool)", self.addr[self.mallory], True, to=self.audit)
        r = self.tx(self.mallory, "record(string,string,bytes32)", "key.release", "aging", b"\x09" * 32, to=self.audit)
        log = r["logs"][0]
        self.assertEqual(log["topics"][0][2:], keccak(text="Recorded(address,uint256,string,string,bytes32)").hex())
        self.assertEqual(to_checksum_address("0x" + log["topics"][1][26:]), self.addr[self.mallory])
        self.assertEqual(int(log["topics"][2], 16), ds)
        self.assertEqual(decode(["string", "string", "bytes32"], bytes.fromhex(log["data"][2:])), ("key.release", "aging", b"\x09" * 32))
        self.refused("not registered", self.mallory, "record(string,string,bytes32)", "key.release", "nope", b"\x09" * 32, to=self.audit)
        self.tx(self.mallory, "record(string,string,bytes32)", "job.run", "", b"\x09" * 32, to=self.audit)
        got = c.rpc("eth_getLogs", {"address": self.audit, "fromBlock": "0x0", "toBlock": "latest"})
        self.assertEqual(sum(1 for l in got if l["topics"][0] == log["topics"][0]), 2)
        self.tx(self.mallory, "checkpoint(bytes32,uint64,bytes32)", b"\x01" * 32, 10, b"\x02" * 32, to=self.audit)
        self.refused("cannot shrink", self.mallory, "checkpoint(bytes32,uint64,bytes32)", b"\x01" * 32, 9, b"\x02" * 32, to=self.audit)
        self.tx(c.keys[0], "setWriter(address,bool)", self.addr[self.mallory], False, to=self.audit)
        self.refused("not an allow-listed", self.mallory, "record(string,string,bytes32)", "job.run", "", b"\x09" * 32, to=self.audit)

    def test_key_release_single_use(self):
        """A key.release / key.release.simulated (dataset, payload hash) is recorded once: two
        plane replicas cannot both answer one release session. Other kinds may repeat."""
        c = self.chain
        ds = self.register()
        self.tx(c.keys[0], "setWriter(address,bool)", self.addr[self.mallory], True, to=self.audit)
        rec = "record(string,string,bytes32)"
        slot = keccak(b"key.release" + ds.to_bytes(32, "big") + b"\x0a" * 32)
        self.assertEqual(self.view("keyReleased(bytes32)", ["bool"], slot, to=self.audit), (False,))
        self.tx(self.mallory, rec, "key.release", "aging", b"\x0a" * 32, to=self.audit)
        self.assertEqual(self.view("keyReleased(bytes32)", ["bool"], slot, to=self.audit), (True,))
        self.refused("single use", c.keys[0], rec, "key.release", "aging", b"\x0a" * 32, to=self.audit)  # another writer too
        self.refused("single use", self.mallory, rec, "key.release.simulated", "aging", b"\x0a" * 32, to=self.audit)  # one slot for both kinds
        self.tx(self.mallory, rec, "key.release.simulated", "aging", b"\x0b" * 32, to=self.audit)
        self.refused("single use", self.mallory, rec, "key.release.simulated", "aging", b"\x0b" * 32, to=self.audit)
        self.tx(self.mallory, rec, "job.run", "aging", b"\x0a" * 32, to=self.audit)  # other kinds repeat
        self.tx(self.mallory, rec, "job.run", "aging", b"\x0a" * 32, to=self.audit)
        self.tx(self.mallory, rec, "key.release", "", b"\x0a" * 32, to=self.audit)  # no dataset: not a release of one
        self.tx(self.mallory, rec, "key.release", "", b"\x0a" * 32, to=self.audit)


if __name__ == "__main__":
    unittest.main()
