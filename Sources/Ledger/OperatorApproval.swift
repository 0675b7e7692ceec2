// Operator approvals: ERC-721 `setApprovalForAll`, granted by signature (as ERC-2612 and
// ERC-4494 permits are), so a service the owner trusts — the Privacy Plane — can register
// datasets and versions and grant rentals for a signed-in owner, while the ledger still holds
// the owner's own signature for every delegation. docs/ledger.md §4.2.
import Envelope
import Foundation
import Wallet

/// `OperatorApproval(address owner,address operator,uint64 expires,uint64 nonce)`, signed by
/// `owner` over the ledger's EIP-712 domain. `expires` 0 revokes.
public struct OperatorApproval: Hashable, Sendable {
    public static let typeString = "OperatorApproval(address owner,address operator,uint64 expires,uint64 nonce)"
    public let owner: Address
    public let `operator`: Address
    /// Unix seconds (exclusive); 0 revokes an earlier approval.
    public let expires: UInt64
    /// Strictly greater than the owner's previous approval's nonce (replay protection).
    public let nonce: UInt64
    /// The owner's secp256k1 signature of `digest(domain:)` (not personal_sign).
    public let signature: Signature

    public init(owner: Address, operator: Address, expires: UInt64, nonce: UInt64, signature: Signature) {
        self.owner = owner; self.operator = `operator`; self.expires = expires; self.nonce = nonce; self.signature = signature
    }

    /// Signs an approval with the owner's key.
    public init(signing owner: PrivateKey, operator: Address, expires: UInt64, nonce: UInt64, domain: EIP712Domain) throws(WalletError) {
        let digest = Self.digest(owner: owner.address, operator: `operator`, expires: expires, nonce: nonce, domain: domain)
        self.init(owner: owner.address, operator: `operator`, expires: expires, nonce: nonce, signature: try owner.sign(hash: digest))
    }

    public static func structHash(owner: Address, operator: Address, expires: UInt64, nonce: UInt64) -> [UInt8] {
        EIP712.structHash(type: typeString, words: [ABIWord.address(owner), ABIWord.address(`operator`), ABIWord.uint(expires), ABIWord.uint(nonce)])
    }

    /// The EIP-712 digest the owner signs.
    public static func digest(owner: Address, operator: Address, expires: UInt64, nonce: UInt64, domain: EIP712Domain) -> [UInt8] {
        EIP712.digest(domain: domain, structHash: structHash(owner: owner, operator: `operator`, expires: expires, nonce: nonce))
    }

    /// Checks the signature recovers to `owner` over `domain` (low s only).
    public func verify(domain: EIP712Domain) throws(LedgerError) {
        let d = Self.digest(owner: owner, operator: `operator`, expires: expires, nonce: nonce, domain: domain)
        let signer: Address
        do { signer = try signature.signer(hash: d) } catch { throw .refused("the operator approval's signature is invalid: \(error)") }
        guard signer == owner else {
            throw .refused("the operator approval is signed by \(signer), not by the owner \(owner) (or for another ledger)")
        }
    }

    /// The EIP-712 JSON a wallet's `eth_signTypedData_v4` takes for this approval.
    public static func typedDataJSON(owner: Address, operator: Address, expires: UInt64, nonce: UInt64, domain: EIP712Domain) -> String {
        """
        {"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"version","type":"string"},\
        {"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"},{"name":"salt","type":"bytes32"}],\
        "OperatorApproval":[{"name":"owner","type":"address"},{"name":"operator","type":"address"},\
        {"name":"expires","type":"uint64"},{"name":"nonce","type":"uint64"}]},"primaryType":"OperatorApproval",\
        "domain":{"name":\(jsonString(domain.name)),"version":\(jsonString(domain.version)),"chainId":\(domain.chainId),\
        "verifyingContract":"\(domain.verifyingContract.checksummed)","salt":"0x\(Hex.encode(domain.salt))"},\
        "message":{"owner":"\(owner.checksummed)","operator":"\(`operator`.checksummed)","expires":\(expires),"nonce":\(nonce)}}
        """
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}

extension EIP712Domain {
    /// The embedded ledger's domain: chain id 0, no contract, salted with its log id.
    public static func embeddedLedger(logID: [UInt8]) -> EIP712Domain {
        // Cannot throw: SHA-256 is 32 bytes.
        try! EIP712Domain(name: "cce4long", version: "1", chainId: 0, verifyingContract: .zero, salt: SHA256Digest.hash(logID).bytes)
    }
}
