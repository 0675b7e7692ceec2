# pragma version 0.4.3
"""
@title cce4long Rentals: the dataset registry, ERC-721 tokens and ERC-4907 rentals
@notice Each dataset is an ERC-721 token, tokenId = uint256(keccak256(dataset id)), owned by
        whoever registered it (or for whom an approved operator registered it). It carries the
        dataset's policy hash and its versions' root hashes. Each rental is a further ERC-721
        token (ids 1, 2, 3, ...) minted to the dataset's owner, with an ERC-4907 user and expiry.
        Only the owner of a dataset's token, or an operator the owner approved (ERC-721
        setApprovalForAll, or an EIP-712 signature via approveOperatorBySig, with an expiry),
        adds versions and grants or ends rentals. Transferring a rental token ends its rental
        (the ERC-4907 reference behaviour). docs/ledger.md section 7.
"""

interface IERC721Receiver:
    def onERC721Received(operator: address, sender: address, tokenId: uint256, data: Bytes[1024]) -> bytes4: nonpayable

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    tokenId: indexed(uint256)

event Approval:
    owner: indexed(address)
    approved: indexed(address)
    tokenId: indexed(uint256)

event ApprovalForAll:
    owner: indexed(address)
    operator: indexed(address)
    approved: bool

# ERC-4907
event UpdateUser:
    tokenId: indexed(uint256)
    user: indexed(address)
    expires: uint64

# cce4long: what the ledger's event queries read back with eth_getLogs.
event DatasetRegistered:
    tokenId: indexed(uint256)
    owner: indexed(address)
    actor: indexed(address)
    dataset: String[64]
    policyHash: bytes32

event VersionAdded:
    tokenId: indexed(uint256)
    actor: indexed(address)
    root: bytes32

event RentalSet:
    rentalId: indexed(uint256)
    datasetToken: indexed(uint256)
    actor: indexed(address)
    user: address
    expires: uint64

event OperatorApproved:
    owner: indexed(address)
    operator: indexed(address)
    actor: indexed(address)
    expires: uint64
    nonce: uint64
    v: uint8
    r: bytes32
    s: bytes32

struct UserInfo:
    user: address
    expires: uint64

struct RentalInfo:
    rentalId: uint256
    user: address
    expires: uint64

PAGE: constant(uint256) = 256
SECP256K1N_HALF: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168
DOMAIN_TYPEHASH: constant(bytes32) = keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract,bytes32 salt)")
APPROVAL_TYPEHASH: constant(bytes32) = keccak256("OperatorApproval(address owner,address operator,uint64 expires,uint64 nonce)")
DOMAIN_NAME_HASH: constant(bytes32) = keccak256("cce4long")
DOMAIN_VERSION_HASH: constant(bytes32) = keccak256("1")

# ERC-721
_owners: HashMap[uint256, address]
_balances: HashMap[address, uint256]
_tokenApprovals: HashMap[uint256, address]
# operator approvals: owner -> operator -> expiry (exclusive; 0 = none, max uint64 = no expiry)
operatorExpires: public(HashMap[address, HashMap[address, uint64]])
# the last EIP-712 approval nonce each owner used (0 = none)
approvalNonce: public(HashMap[address, uint64])

# datasets (keyed by their token id)
datasetName: public(HashMap[uint256, String[64]])
policyHash: public(HashMap[uint256, bytes32])
versionCount: public(HashMap[uint256, uint256])
_versionRoots: HashMap[uint256, HashMap[uint256, bytes32]]
_versionIndex: HashMap[uint256, HashMap[bytes32, uint256]]  # 1-based; 0 = not a version

# rentals
nextRentalId: public(uint256)
rentalDataset: public(HashMap[uint256, uint256])  # rental id -> dataset token id; 0 = not a rental
rentalCount: public(HashMap[uint256, uint256])    # dataset token id -> number of rentals
_rentalAt: HashMap[uint256, HashMap[uint256, uint256]]
_users: HashMap[uint256, UserInfo]


@deploy
def __init__():
    self.nextRentalId = 1


# ---- ERC-165 ----

@external
@view
def supportsInterface(interfaceId: bytes4) -> bool:
    return interfaceId in [0x01ffc9a7, 0x80ac58cd, 0xad092b5c]


# ---- operator approvals ----

@internal
@view
def _isOperator(owner: address, operator: address) -> bool:
    return block.timestamp < convert(self.operatorExpires[owner][operator], uint256)

@internal
@view
def _authorized(owner: address, sender: address) -> bool:
    return sender == owner or self._isOperator(owner, sender)

@external
@view
def isApprovedForAll(owner: address, operator: address) -> bool:
    return self._isOperator(owner, operator)

@external
def setApprovalForAll(operator: address, approved: bool):
    assert operator != msg.sender, "an owner cannot approve itself"
    expires: uint64 = 0
    if approved:
        expires = max_value(uint64)
    self.operatorExpires[msg.sender][operator] = expires
    log ApprovalForAll(owner=msg.sender, operator=operator, approved=approved)

@internal
@view
def _domainSeparator() -> bytes32:
    return keccak256(abi_encode(DOMAIN_TYPEHASH, DOMAIN_NAME_HASH, DOMAIN_VERSION_HASH, chain.id, self, empty(bytes32)))

@external
@view
def domainSeparator() -> bytes32:
    return self._domainSeparator()

@external
def approveOperatorBySig(owner: address, operator: address, expires: uint64, nonce: uint64, v: uint8, r: bytes32, s: bytes32):
    """
    @notice EIP-712 OperatorApproval(owner, operator, expires, nonce) signed by `owner`; anyone
            may submit it. expires = 0 revokes. The nonce must exceed the owner's last one.
    """
    assert nonce > self.approvalNonce[owner], "approval nonce already used: a replay or out of order (it must exceed the owner's last)"
    assert expires == 0 or convert(expires, uint256) > block.timestamp, "the approval has already expired"
    assert convert(s, uint256) <= SECP256K1N_HALF, "signature has a high s (EIP-2)"
    assert v == 27 or v == 28, "signature v must be 27 or 28"
    structHash: bytes32 = keccak256(abi_encode(APPROVAL_TYPEHASH, owner, operator, expires, nonce))
    digest: bytes32 = keccak256(concat(b"\x19\x01", self._domainSeparator(), structHash))
    signer: address = ecrecover(digest, v, r, s)
    assert signer != empty(address) and signer == owner, "the approval is not signed by its owner"
    self.approvalNonce[owner] = nonce
    self.operatorExpires[owner][operator] = expires
    log OperatorApproved(owner=owner, operator=operator, actor=msg.sender, expires=expires, nonce=nonce, v=v, r=r, s=s)
    log ApprovalForAll(owner=owner, operator=operator, approved=expires != 0)


# ---- ERC-721 ----

@external
@view
def balanceOf(owner: address) -> uint256:
    assert owner != empty(address), "the zero address owns nothing"
    return self._balances[owner]

@external
@view
def ownerOf(tokenId: uint256) -> address:
    owner: address = self._owners[tokenId]
    assert owner != empty(address), "no such token"
    return owner

@external
@view
def getApproved(tokenId: uint256) -> address:
    assert self._owners[tokenId] != empty(address), "no such token"
    return self._tokenApprovals[tokenId]

@external
def approve(approved: address, tokenId: uint256):
    owner: address = self._owners[tokenId]
    assert owner != empty(address), "no such token"
    assert approved != owner, "the owner cannot be approved"
    assert self._authorized(owner, msg.sender), "only the token's owner or its operator may approve"
    self._tokenApprovals[tokenId] = approved
    log Approval(owner=owner, approved=approved, tokenId=tokenId)

@internal
def _mint(to: address, tokenId: uint256):
    self._owners[tokenId] = to
    self._balances[to] += 1
    log Transfer(sender=empty(address), receiver=to, tokenId=tokenId)

@internal
def _transfer(sender: address, receiver: address, tokenId: uint256):
    owner: address = self._owners[tokenId]
    assert owner != empty(address), "no such token"
    assert owner == sender, "the token is not owned by the sender"
    assert receiver != empty(address), "cannot transfer to the zero address"
    assert self._authorized(owner, msg.sender) or self._tokenApprovals[tokenId] == msg.sender, "not the owner, an operator or approved"
    self._tokenApprovals[tokenId] = empty(address)
    self._balances[sender] -= 1
    self._balances[receiver] += 1
    self._owners[tokenId] = receiver
    # ERC-4907 reference: a transfer ends the rental.
    if sender != receiver and self._users[tokenId].user != empty(address):
        self._users[tokenId] = empty(UserInfo)
        log UpdateUser(tokenId=tokenId, user=empty(address), expires=0)
        log RentalSet(rentalId=tokenId, datasetToken=self.rentalDataset[tokenId], actor=msg.sender, user=empty(address), expires=0)
    log Transfer(sender=sender, receiver=receiver, tokenId=tokenId)

@external
def transferFrom(sender: address, receiver: address, tokenId: uint256):
    self._transfer(sender, receiver, tokenId)

@external
def safeTransferFrom(sender: address, receiver: address, tokenId: uint256, data: Bytes[1024] = b""):
    self._transfer(sender, receiver, tokenId)
    if receiver.is_contract:
        ret: bytes4 = extcall IERC721Receiver(receiver).onERC721Received(msg.sender, sender, tokenId, data)
        assert ret == method_id("onERC721Received(address,address,uint256,bytes)", output_type=bytes4), "the receiver refused the token"


# ---- the dataset registry ----

@internal
@view
def _datasetOwner(tokenId: uint256) -> address:
    assert len(self.datasetName[tokenId]) > 0, "dataset is not registered"
    return self._owners[tokenId]

@external
@view
def isRegistered(tokenId: uint256) -> bool:
    return len(self.datasetName[tokenId]) > 0

@external
def register(dataset: String[64], policyHash: bytes32, owner: address) -> uint256:
    """
    @notice Registers `dataset` (its token id is uint256(keccak256(dataset))) owned by `owner`.
    """
    assert len(dataset) > 0, "a dataset id is 1 to 64 characters"
    assert owner != empty(address), "the zero address cannot own a dataset"
    assert self._authorized(owner, msg.sender), "the sender may not register a dataset for that owner: it is not the owner nor an operator the owner approved"
    tokenId: uint256 = convert(keccak256(dataset), uint256)
    assert tokenId > convert(max_value(uint64), uint256), "dataset id hashes into the rental id range"
    assert len(self.datasetName[tokenId]) == 0, "dataset is already registered"
    self.datasetName[tokenId] = dataset
    self.policyHash[tokenId] = policyHash
    self._mint(owner, tokenId)
    log DatasetRegistered(tokenId=tokenId, owner=owner, actor=msg.sender, dataset=dataset, policyHash=policyHash)
    return tokenId

@external
def addVersion(tokenId: uint256, root: bytes32):
    owner: address = self._datasetOwner(tokenId)
    assert self._authorized(owner, msg.sender), "only the owner of the dataset or an operator it approved may do this"
    assert root != empty(bytes32), "a root hash of zeros names no version"
    assert self._versionIndex[tokenId][root] == 0, "that root is already a version of the dataset"
    n: uint256 = self.versionCount[tokenId]
    self._versionRoots[tokenId][n] = root
    self._versionIndex[tokenId][root] = n + 1
    self.versionCount[tokenId] = n + 1
    log VersionAdded(tokenId=tokenId, actor=msg.sender, root=root)

@external
@view
def versionRoots(tokenId: uint256, start: uint256) -> DynArray[bytes32, PAGE]:
    out: DynArray[bytes32, PAGE] = []
    n: uint256 = self.versionCount[tokenId]
    for i: uint256 in range(start, start + PAGE, bound=PAGE):
        if i >= n:
            break
        out.append(self._versionRoots[tokenId][i])
    return out


# ---- ERC-4907 rentals ----

@internal
@view
def _userOf(tokenId: uint256) -> address:
    if block.timestamp < convert(self._users[tokenId].expires, uint256):
        return self._users[tokenId].user
    return empty(address)

@external
@view
def userOf(tokenId: uint256) -> address:
    return self._userOf(tokenId)

@external
@view
def userExpires(tokenId: uint256) -> uint256:
    return convert(self._users[tokenId].expires, uint256)

@internal
def _setUser(tokenId: uint256, user: address, expires: uint64):
    self._users[tokenId] = UserInfo(user=user, expires=expires)
    log UpdateUser(tokenId=tokenId, user=user, expires=expires)
    log RentalSet(rentalId=tokenId, datasetToken=self.rentalDataset[tokenId], actor=msg.sender, user=user, expires=expires)

@internal
@view
def _checkRental(tokenId: uint256):
    dataset: uint256 = self.rentalDataset[tokenId]
    assert dataset != 0, "no such rental"
    assert self._authorized(self._owners[dataset], msg.sender), "only the owner of the dataset or an operator it approved may do this"

@external
def rent(datasetToken: uint256, user: address, expires: uint64) -> uint256:
    """
    @notice Makes a new rental of the dataset: a token minted to the dataset's owner whose
            ERC-4907 user is `user` until `expires` (exclusive). Returns its id.
    """
    owner: address = self._datasetOwner(datasetToken)
    assert self._authorized(owner, msg.sender), "only the owner of the dataset or an operator it approved may do this"
    assert user != empty(address), "a rental's user cannot be the zero address"
    assert convert(expires, uint256) > block.timestamp, "the rental would expire at or before the block's time"
    rentalId: uint256 = self.nextRentalId
    self.nextRentalId = rentalId + 1
    self.rentalDataset[rentalId] = datasetToken
    n: uint256 = self.rentalCount[datasetToken]
    self._rentalAt[datasetToken][n] = rentalId
    self.rentalCount[datasetToken] = n + 1
    self._mint(owner, rentalId)
    self._setUser(rentalId, user, expires)
    return rentalId

@external
def setUser(tokenId: uint256, user: address, expires: uint64):
    self._checkRental(tokenId)
    if user != empty(address):
        assert convert(expires, uint256) > block.timestamp, "the rental would expire at or before the block's time"
    self._setUser(tokenId, user, expires)

@external
def endRental(tokenId: uint256):
    self._checkRental(tokenId)
    assert self._userOf(tokenId) != empty(address), "the rental has already ended or expired"
    self._setUser(tokenId, empty(address), 0)

@external
@view
def rentals(datasetToken: uint256, start: uint256) -> DynArray[RentalInfo, PAGE]:
    """
    @notice A page of the dataset's rentals as stored (user and expires, not compared with any time).
    """
    out: DynArray[RentalInfo, PAGE] = []
    n: uint256 = self.rentalCount[datasetToken]
    for i: uint256 in range(start, start + PAGE, bound=PAGE):
        if i >= n:
            break
        id: uint256 = self._rentalAt[datasetToken][i]
        out.append(RentalInfo(rentalId=id, user=self._users[id].user, expires=self._users[id].expires))
    return out
