/// Errors of the formats. Messages never contain key bytes, plaintext or decrypted names.
public enum EnvelopeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A tag did not verify, or a hash did not match: the object was tampered with,
    /// truncated, swapped, rolled back, or read with the wrong key or associated data.
    case authenticationFailed(String)
    /// The bytes are not a well-formed object of this format (after or before decryption).
    case malformed(String)
    /// A format version this build does not read.
    case unsupportedVersion(String)
    /// A caller's argument is out of range (a bad segment size, a read past the end).
    case invalidArgument(String)
    /// The cryptographic library failed (not an authentication failure).
    case crypto(String)

    public var description: String {
        switch self {
        case .authenticationFailed(let m): return "authentication failed: \(m)"
        case .malformed(let m): return "malformed object: \(m)"
        case .unsupportedVersion(let m): return "unsupported format version: \(m)"
        case .invalidArgument(let m): return "invalid argument: \(m)"
        case .crypto(let m): return "crypto library error: \(m)"
        }
    }

    /// True when the bytes failed an integrity check (tampering or wrong key).
    public var isIntegrityFailure: Bool {
        switch self {
        case .authenticationFailed, .malformed, .unsupportedVersion: return true
        default: return false
        }
    }
}
