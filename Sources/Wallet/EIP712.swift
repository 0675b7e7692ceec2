// EIP-712 typed structured data: domain separators, struct hashes over 32-byte ABI words, and
// the digest a wallet signs (`eth_signTypedData_v4`). Only static field types are needed here
// (address, uintN, bytes32, and strings hashed to bytes32), so no general ABI encoder.
import Envelope

/// 32-byte ABI words for the static types EIP-712 structs use.
public enum ABIWord {
    /// An unsigned integer, big-endian, left-padded with zeros.
    public static func uint(_ v: UInt64) -> [UInt8] {
        [UInt8](repeating: 0, count: 24) + (0..<8).map { UInt8(truncatingIfNeeded: v >> (56 - 8 * UInt64($0))) }
    }
    /// An address, left-padded with zeros.
    public static func address(_ a: Address) -> [UInt8] { [UInt8](repeating: 0, count: 12) + a.bytes }
    /// A string or dynamic bytes member: the Keccak-256 of its bytes.
    public static func string(_ s: String) -> [UInt8] { Keccak256.hash(Array(s.utf8)) }
}

/// The EIP-712 domain: `EIP712Domain(string name,string version,uint256 chainId,address
/// verifyingContract,bytes32 salt)` — all five fields, always.
public struct EIP712Domain: Hashable, Sendable {
    public static let typeString = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract,bytes32 salt)"
    public let name: String
    public let version: String
    public let chainId: UInt64
    public let verifyingContract: Address
    /// 32 bytes.
    public let salt: [UInt8]

    public init(name: String, version: String, chainId: UInt64, verifyingContract: Address, salt: [UInt8]) throws(WalletError) {
        guard salt.count == 32 else { throw .crypto("an EIP-712 domain salt is 32 bytes, not \(salt.count)") }
        self.name = name; self.version = version; self.chainId = chainId; self.verifyingContract = verifyingContract; self.salt = salt
    }

    /// `hashStruct(domain)`.
    public var separator: [UInt8] {
        Keccak256.hash(Keccak256.hash(Array(Self.typeString.utf8)) + ABIWord.string(name) + ABIWord.string(version)
            + ABIWord.uint(chainId) + ABIWord.address(verifyingContract) + salt)
    }
}

public enum EIP712 {
    /// keccak256(0x19 0x01 ‖ domainSeparator ‖ structHash): what the signer signs.
    public static func digest(domain: EIP712Domain, structHash: [UInt8]) -> [UInt8] {
        Keccak256.hash([0x19, 0x01] + domain.separator + structHash)
    }

    /// `hashStruct` of a struct of static members: keccak256(typeHash ‖ words).
    public static func structHash(type: String, words: [[UInt8]]) -> [UInt8] {
        Keccak256.hash(Keccak256.hash(Array(type.utf8)) + words.joined())
    }
}
