// Thin typed wrappers over the OpenSSL shim. Each names the C function it calls.
internal import COpenSSL

/// An error from the cryptographic library itself (not an authentication failure).
public struct CryptoError: Error, CustomStringConvertible {
    public let description: String
    static func last(_ what: String) -> CryptoError {
        var buf = [CChar](repeating: 0, count: 256)
        cce4_last_error(&buf, buf.count)
        let text = buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return CryptoError(description: "\(what) failed: \(text)")
    }
}

/// The CSPRNG (RAND_bytes).
public enum Random {
    public static func fill(_ buffer: UnsafeMutableRawBufferPointer) throws(CryptoError) {
        guard buffer.count > 0 else { return }
        guard cce4_random_bytes(buffer.baseAddress!.assumingMemoryBound(to: UInt8.self), buffer.count) == 1 else {
            throw CryptoError.last("RAND_bytes")
        }
    }

    public static func bytes(_ count: Int) throws(CryptoError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let ok = out.withUnsafeMutableBytes { b in
            b.count == 0 || cce4_random_bytes(b.baseAddress!.assumingMemoryBound(to: UInt8.self), b.count) == 1
        }
        guard ok else { throw CryptoError.last("RAND_bytes") }
        return out
    }
}

/// SHA-256 (EVP_Digest, EVP_MD_CTX).
public struct SHA256Digest: Hashable, Sendable, CustomStringConvertible {
    public static let byteCount = 32
    /// The 32 digest bytes.
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws(EnvelopeError) {
        guard bytes.count == Self.byteCount else { throw .malformed("a SHA-256 digest is 32 bytes, got \(bytes.count)") }
        self.bytes = bytes
    }

    /// Parses 64 lowercase or uppercase hex digits.
    public init(hex: String) throws(EnvelopeError) {
        guard let b = Hex.decode(hex), b.count == Self.byteCount else {
            throw .malformed("a root or directory hash is 64 hex digits")
        }
        self.bytes = b
    }

    public static func hash(_ data: UnsafeRawBufferPointer) -> SHA256Digest {
        var out = [UInt8](repeating: 0, count: 32)
        let ok = cce4_sha256(data.baseAddress?.assumingMemoryBound(to: UInt8.self), data.count, &out)
        precondition(ok == 1, "SHA-256 cannot fail on valid input")
        return SHA256Digest(unchecked: out)
    }

    public static func hash(_ data: [UInt8]) -> SHA256Digest { data.withUnsafeBytes { hash($0) } }

    init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    /// Constant-time comparison, for digests that stand for authenticity.
    public func constantTimeEquals(_ other: SHA256Digest) -> Bool {
        bytes.withUnsafeBytes { a in other.bytes.withUnsafeBytes { b in cce4_ct_equal(a.baseAddress!, b.baseAddress!, 32) == 1 } }
    }

    public var hex: String { Hex.encode(bytes) }
    public var description: String { hex }

    /// Hashes 8 bytes: digests are uniformly random, and hashing all 32 byte by byte showed in
    /// profiles of directory-cache lookups.
    public func hash(into hasher: inout Hasher) {
        var v: UInt64 = 0
        for i in 0..<min(8, bytes.count) { v = v << 8 | UInt64(bytes[i]) }
        hasher.combine(v)
    }

    public static func == (a: SHA256Digest, b: SHA256Digest) -> Bool { a.bytes == b.bytes }
}

/// Incremental SHA-256, for objects read in pieces.
public final class SHA256Hasher {
    private let ctx: OpaquePointer
    public init() {
        guard let c = cce4_sha256_new() else { fatalError("EVP_MD_CTX_new failed: out of memory") }
        ctx = c
    }
    deinit { cce4_sha256_free(ctx) }
    public func update(_ data: UnsafeRawBufferPointer) {
        guard data.count > 0 else { return }
        precondition(cce4_sha256_update(ctx, data.baseAddress!.assumingMemoryBound(to: UInt8.self), data.count) == 1)
    }
    public func finalize() -> SHA256Digest {
        var out = [UInt8](repeating: 0, count: 32)
        precondition(cce4_sha256_final(ctx, &out) == 1)
        return SHA256Digest(unchecked: out)
    }
}

/// HKDF-SHA256, RFC 5869 (EVP_KDF "HKDF").
public enum HKDF {
    /// Derives `length` bytes into locked memory.
    public static func deriveKey(ikm: SecureBytes, salt: UnsafeRawBufferPointer, info: UnsafeRawBufferPointer, length: Int) throws -> SecureBytes {
        try SecureBytes(count: length) { out in
            let ok = ikm.withUnsafeBytes { k in
                cce4_hkdf_sha256(k.baseAddress?.assumingMemoryBound(to: UInt8.self), k.count,
                                 salt.baseAddress?.assumingMemoryBound(to: UInt8.self), salt.count,
                                 info.baseAddress?.assumingMemoryBound(to: UInt8.self), info.count,
                                 out.baseAddress!.assumingMemoryBound(to: UInt8.self), length)
            }
            guard ok == 1 else { throw CryptoError.last("HKDF-SHA256") }
        }
    }
}

/// One AES-256-GCM context with its key schedule expanded once (EVP_CIPHER_CTX).
/// Not thread-safe: one thread uses it at a time.
final class GCMContext {
    private let ctx: OpaquePointer
    let sealing: Bool

    init(key: SecureBytes, sealing: Bool) throws {
        precondition(key.count == 32)
        let made = key.withUnsafeBytes { k in cce4_gcm_new(k.baseAddress!.assumingMemoryBound(to: UInt8.self), sealing ? 1 : 0) }
        guard let made else { throw CryptoError.last("AES-256-GCM context setup") }
        ctx = made
        self.sealing = sealing
    }

    deinit { cce4_gcm_free(ctx) }

    /// cce4_gcm_seal: `out` holds `input.count` bytes of ciphertext followed by the 16-byte tag.
    func seal(nonce: UnsafeRawBufferPointer, input: UnsafeRawBufferPointer, out: UnsafeMutableRawBufferPointer) throws(CryptoError) {
        precondition(nonce.count == 12 && out.count == input.count + 16)
        let ok = cce4_gcm_seal(ctx, nonce.baseAddress!.assumingMemoryBound(to: UInt8.self),
                               input.baseAddress?.assumingMemoryBound(to: UInt8.self), input.count,
                               out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                               out.baseAddress!.advanced(by: input.count).assumingMemoryBound(to: UInt8.self))
        guard ok == 1 else { throw CryptoError.last("AES-256-GCM seal") }
    }

    /// cce4_gcm_open: decrypts `ciphertextAndTag` into `out` (count - 16 bytes). Returns
    /// false if the tag does not verify; then `out` has been wiped.
    func open(nonce: UnsafeRawBufferPointer, ciphertextAndTag: UnsafeRawBufferPointer, out: UnsafeMutableRawBufferPointer) -> Bool {
        let n = ciphertextAndTag.count - 16
        precondition(nonce.count == 12 && n >= 0 && out.count == n)
        let base = ciphertextAndTag.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let ok = cce4_gcm_open(ctx, nonce.baseAddress!.assumingMemoryBound(to: UInt8.self),
                               n > 0 ? base : nil, n, base.advanced(by: n),
                               n > 0 ? out.baseAddress!.assumingMemoryBound(to: UInt8.self) : nil)
        if ok != 1 { secureWipe(out); return false }
        return true
    }
}

/// Constant-time equality of two byte buffers of equal length (CRYPTO_memcmp).
public func constantTimeEquals(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    guard a.count == b.count else { return false }
    if a.count == 0 { return true }
    return cce4_ct_equal(a.baseAddress!, b.baseAddress!, a.count) == 1
}

/// Constant-time equality of two byte arrays (false when their lengths differ).
public func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    a.withUnsafeBytes { x in b.withUnsafeBytes { y in constantTimeEquals(x, y) } }
}

/// Lowercase hex.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)
    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }
    /// The value of one hex digit (either case), or nil.
    public static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: return c - 48
        case 97...102: return c - 87
        case 65...70: return c - 55
        default: return nil
        }
    }

    public static func decode(_ text: String) -> [UInt8]? {
        let u = Array(text.utf8)
        guard u.count % 2 == 0 else { return nil }
        var out = [UInt8](); out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let hi = nibble(u[i]), let lo = nibble(u[i + 1]) else { return nil }
            out.append(hi << 4 | lo); i += 2
        }
        return out
    }
}
