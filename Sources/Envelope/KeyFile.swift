// The development key file: a dataset key in a local file, until attested key release.

/// Text format of an insecure (development-only) key file:
///
///     cce4-insecure-key-v1 <64 lowercase hex digits>\n
///
/// The name says what it is: a key at rest in a file, readable by anyone who can read
/// the file. Production keys come from the Privacy Plane by attested key release.
public enum InsecureKeyFile {
    public static let label = "cce4-insecure-key-v1"
    public static let keyLength = 32

    /// Encodes a key. The returned bytes hold the key: wipe them after writing.
    public static func encode(_ key: SecureBytes) -> [UInt8] {
        precondition(key.count == keyLength)
        var out = Array((label + " ").utf8)
        key.withUnsafeBytes { k in
            let digits = Array("0123456789abcdef".utf8)
            for b in k { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        }
        out.append(0x0a)
        return out
    }

    /// Parses a key file's bytes into locked memory. Errors never echo the file's content.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws -> SecureBytes {
        var end = bytes.count
        while end > 0, bytes[end - 1] == 0x0a || bytes[end - 1] == 0x0d || bytes[end - 1] == 0x20 { end -= 1 }
        let prefix = Array((label + " ").utf8)
        guard end == prefix.count + 2 * keyLength, Array(bytes[0..<prefix.count]) == prefix else {
            throw EnvelopeError.malformed("not a cce4 key file (expected one line '\(label) <64 hex digits>'; make one with 'cce4 key generate')")
        }
        return try SecureBytes(count: keyLength) { out in
            for i in 0..<keyLength {
                guard let hi = Hex.nibble(bytes[prefix.count + 2 * i]), let lo = Hex.nibble(bytes[prefix.count + 2 * i + 1]) else {
                    throw EnvelopeError.malformed("key file has a non-hex digit")
                }
                out[i] = hi << 4 | lo
            }
        }
    }
}
