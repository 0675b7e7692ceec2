// Ethereum addresses and their EIP-55 mixed-case checksum.
import Envelope

/// A 20-byte Ethereum address.
public struct Address: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let bytes: [UInt8]

    public static let zero = Address(bytes: [UInt8](repeating: 0, count: 20))

    public init(bytes: [UInt8]) {
        precondition(bytes.count == 20, "an address is 20 bytes")
        self.bytes = bytes
    }

    /// Parses "0x" + 40 hex digits. All-lowercase and all-uppercase forms carry no checksum
    /// and are accepted unless `requireChecksum`; mixed case must match EIP-55 exactly.
    public init(_ text: String, requireChecksum: Bool = false) throws(WalletError) {
        guard text.utf8.count == 42, text.hasPrefix("0x"), let b = Hex.decode(String(text.dropFirst(2))) else {
            throw .malformedAddress(text)
        }
        self.init(bytes: b)
        let digits = text.dropFirst(2)
        let hasLower = digits.contains { $0.isLowercase }, hasUpper = digits.contains { $0.isUppercase }
        if hasLower && hasUpper || requireChecksum {
            guard checksummed == text else { throw .badChecksum(text) }
        }
    }

    /// EIP-55: hex digit i is uppercased when nibble i of Keccak-256(lowercase hex) is >= 8.
    public var checksummed: String {
        let lower = Array(Hex.encode(bytes).utf8)
        let h = Keccak256.hash(lower)
        var out = [UInt8]("0x".utf8)
        for (i, c) in lower.enumerated() {
            let nibble = i % 2 == 0 ? h[i / 2] >> 4 : h[i / 2] & 15
            out.append(c >= 97 && nibble >= 8 ? c - 32 : c)
        }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { checksummed }

    public static func < (a: Address, b: Address) -> Bool { compareBE(a.bytes, b.bytes) < 0 }
}
