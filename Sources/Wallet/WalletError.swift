// Errors of the Wallet library: small and closed; each says what to do next where it can.

/// Why a key, address, signature or keystore was refused.
public enum WalletError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The 32 bytes are not a secp256k1 private key (zero, or not below the group order).
    case invalidPrivateKey
    /// The signature is malformed (length, v, r or s out of range) or recovers no key.
    case invalidSignature(String)
    /// s is in the upper half of the order: malleable, refused (EIP-2).
    case highS
    /// The text is not a 0x-prefixed 40-hex-digit address.
    case malformedAddress(String)
    /// Mixed-case address whose letters' case does not match EIP-55.
    case badChecksum(String)
    /// The keystore file is not a valid keystore v3 JSON.
    case keystore(String)
    /// The keystore's MAC does not match: the password is wrong (or the file was altered).
    case wrongPassword
    /// The OpenSSL primitive failed (out of memory, parameters it refuses).
    case crypto(String)

    public var description: String {
        switch self {
        case .invalidPrivateKey: return "not a secp256k1 private key (must be 32 bytes, nonzero, below the group order)"
        case .invalidSignature(let why): return "invalid signature: \(why)"
        case .highS: return "invalid signature: s is in the upper half of the curve order (malleable; EIP-2 refuses it)"
        case .malformedAddress(let text): return "not an Ethereum address (0x and 40 hex digits): \(text.prefix(64))"
        case .badChecksum(let text): return "address \(text.prefix(64)) fails its EIP-55 checksum (a mistyped letter?)"
        case .keystore(let why): return "not a usable keystore v3 file: \(why)"
        case .wrongPassword: return "wrong password for this keystore (its MAC does not match)"
        case .crypto(let why): return why
        }
    }
}
