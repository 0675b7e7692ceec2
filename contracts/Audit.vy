# pragma version 0.4.3
"""
@title cce4long Audit: events and checkpoint roots from allow-listed writers
@notice record() logs an audit event (actor, kind, dataset, payload hash; key releases single use); checkpoint() stores
        the latest root of a log (e.g. the embedded ledger's RFC 6962 tree head) per origin.
        Writers are allow-listed by the admin (the deployer). docs/ledger.md section 7.
"""

interface Registry:
    def isRegistered(tokenId: uint256) -> bool: view

event Recorded:
    actor: indexed(address)
    datasetToken: indexed(uint256)
    kind: String[64]
    dataset: String[64]
    payloadHash: bytes32

event Checkpointed:
    origin: indexed(bytes32)
    actor: indexed(address)
    size: uint64
    root: bytes32

event WriterSet:
    writer: indexed(address)
    allowed: bool

admin: public(address)
registry: public(address)
writers: public(HashMap[address, bool])
count: public(uint256)
checkpointSize: public(HashMap[bytes32, uint64])
checkpointRoot: public(HashMap[bytes32, bytes32])
# keccak256("key.release" ++ datasetToken ++ payloadHash) -> recorded: a key-release session is
# single use per (dataset, payload hash), so two plane replicas cannot both answer one session
# (docs/key-release.md, Single use). Set for "key.release" and "key.release.simulated" alike.
keyReleased: public(HashMap[bytes32, bool])


@deploy
def __init__(registry: address):
    self.admin = msg.sender
    self.registry = registry
    self.writers[msg.sender] = True
    log WriterSet(writer=msg.sender, allowed=True)

@external
def setWriter(writer: address, allowed: bool):
    assert msg.sender == self.admin, "only the audit contract's admin may change its writers"
    self.writers[writer] = allowed
    log WriterSet(writer=writer, allowed=allowed)

@external
def record(kind: String[64], dataset: String[64], payloadHash: bytes32):
    assert self.writers[msg.sender], "not an allow-listed audit writer"
    assert len(kind) > 0, "an event kind is 1 to 64 characters"
    datasetToken: uint256 = 0
    if len(dataset) > 0:
        datasetToken = convert(keccak256(dataset), uint256)
        assert staticcall Registry(self.registry).isRegistered(datasetToken), "dataset is not registered"
        if kind == "key.release" or kind == "key.release.simulated":
            slot: bytes32 = keccak256(concat(b"key.release", convert(datasetToken, bytes32), payloadHash))
            assert not self.keyReleased[slot], "key release already recorded for this dataset and payload hash: a release session is single use"
            self.keyReleased[slot] = True
    self.count += 1
    log Recorded(actor=msg.sender, datasetToken=datasetToken, kind=kind, dataset=dataset, payloadHash=payloadHash)

@external
def checkpoint(origin: bytes32, size: uint64, root: bytes32):
    assert self.writers[msg.sender], "not an allow-listed audit writer"
    assert size >= self.checkpointSize[origin], "a checkpoint cannot shrink the log"
    self.checkpointSize[origin] = size
    self.checkpointRoot[origin] = root
    log Checkpointed(origin=origin, actor=msg.sender, size=size, root=root)
