// The primitives of attested key release, over the COpenSSL shim: X25519 key agreement,
// SHA-512 (the report data), HMAC-SHA256 (stateless challenges), one-shot AES-256-GCM
// (the key wrap), and the length-prefixed encoding every hash here is taken over.
internal import COpenSSL
import Envelope

/// An ephemeral X25519 key pair (RFC 7748). The private key lives in SecureBytes and is
/// wiped when the pair is released: one pair per release, never reused.
public final class X25519KeyPair: Sendable {
    let privateKey: SecureBytes
    /// The 32-byte public key.
    public let publicKey: [UInt8]

    /// A fresh pair (cce4_x25519_generate).
    public init() throws(KeyReleaseError) {
        var pub = [UInt8](repeating: 0, count: 32)
        do {
            privateKey = try SecureBytes(count: 32) { p in
                guard cce4_x25519_generate(p.baseAddress!.assumingMemoryBound(to: UInt8.self), &pub) == 1 else {
                    throw KeyReleaseError.internalFailure("X25519 key generation failed")
                }
            }
        } catch { throw .internalFailure("cannot make an X25519 key pair: \(error)") }
        publicKey = pub
    }

    /// A pair from a known private key: test vectors only.
    public init(privateKey bytes: [UInt8]) throws(KeyReleaseError) {
        guard bytes.count == 32 else { throw .malformed("an X25519 private key is 32 bytes") }
        do { privateKey = try bytes.withUnsafeBytes { try SecureBytes(copying: $0) } } catch { throw .internalFailure("\(error)") }
        // The public key is X25519(priv, 9): derive it with the base point.
        var base = [UInt8](repeating: 0, count: 32); base[0] = 9
        var pub = [UInt8](repeating: 0, count: 32)
        let ok = privateKey.withUnsafeBytes { p in cce4_x25519_derive(p.baseAddress!.assumingMemoryBound(to: UInt8.self), base, &pub) }
        guard ok == 1 else { throw .malformed("not a usable X25519 private key") }
        publicKey = pub
    }

    /// X25519(self, peer) into locked memory. Refuses a malformed or low-order peer key.
    public func sharedSecret(with peer: [UInt8]) throws(KeyReleaseError) -> SecureBytes {
        guard peer.count == 32 else { throw .malformed("an X25519 public key is 32 bytes, not \(peer.count)") }
        do {
            return try SecureBytes(count: 32) { out in
                let ok = privateKey.withUnsafeBytes { p in
                    cce4_x25519_derive(p.baseAddress!.assumingMemoryBound(to: UInt8.self), peer, out.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
                guard ok == 1 else { throw KeyReleaseError.malformed("the peer's X25519 public key is invalid or of low order") }
            }
        } catch let e as KeyReleaseError { throw e } catch { throw .internalFailure("\(error)") }
    }
}

enum Digest {
    /// SHA-512 (cce4_sha512).
    static func sha512(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 64)
        guard cce4_sha512(data, data.count, &out) == 1 else { fatalError("SHA-512 unavailable in libcrypto") }
        return out
    }

    static func sha256(_ data: [UInt8]) -> [UInt8] { SHA256Digest.hash(data).bytes }

    /// HMAC-SHA256 under a key in locked memory (cce4_hmac_sha256).
    static func hmac(key: SecureBytes, _ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        let ok = key.withUnsafeBytes { k in cce4_hmac_sha256(k.baseAddress?.assumingMemoryBound(to: UInt8.self), k.count, data, data.count, &out) }
        guard ok == 1 else { fatalError("HMAC-SHA256 unavailable in libcrypto") }
        return out
    }
}

/// One-shot AES-256-GCM with an empty associated data, for the key wrap: each wrapping key
/// is derived for one dataset of one session and used once, so the nonce is fixed (zero).
enum KeyWrapCipher {
    static let nonce = [UInt8](repeating: 0, count: 12)

    static func seal(key: SecureBytes, _ plaintext: SecureBytes) throws(KeyReleaseError) -> [UInt8] {
        guard let ctx = key.withUnsafeBytes({ cce4_gcm_new($0.baseAddress!.assumingMemoryBound(to: UInt8.self), 1) }) else {
            throw .internalFailure("AES-256-GCM setup failed")
        }
        defer { cce4_gcm_free(ctx) }
        var out = [UInt8](repeating: 0, count: plaintext.count + 16)
        let n = plaintext.count
        let ok = plaintext.withUnsafeBytes { p in
            out.withUnsafeMutableBufferPointer { o in
                cce4_gcm_seal(ctx, nonce, p.baseAddress!.assumingMemoryBound(to: UInt8.self), n, o.baseAddress!, o.baseAddress! + n)
            }
        }
        guard ok == 1 else { throw .internalFailure("AES-256-GCM seal failed") }
        return out
    }

    /// Opens into locked memory; nil when the tag does not verify (nothing is returned).
    static func open(key: SecureBytes, _ sealed: [UInt8]) throws(KeyReleaseError) -> SecureBytes? {
        guard sealed.count > 16 else { return nil }
        guard let ctx = key.withUnsafeBytes({ cce4_gcm_new($0.baseAddress!.assumingMemoryBound(to: UInt8.self), 0) }) else {
            throw .internalFailure("AES-256-GCM setup failed")
        }
        defer { cce4_gcm_free(ctx) }
        let n = sealed.count - 16
        do {
            return try SecureBytes(count: n) { out in
                let ok = sealed.withUnsafeBufferPointer { s in
                    cce4_gcm_open(ctx, nonce, s.baseAddress!, n, s.baseAddress! + n, out.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
                if ok != 1 { secureWipe(out); throw KeyReleaseError.tamperedKey("") }
            }
        } catch let e as KeyReleaseError {
            if e.code == .tamperedKey { return nil }
            throw e
        } catch { throw .internalFailure("\(error)") }
    }
}

/// The byte encoding every hash and MAC of the protocol is taken over (docs/key-release.md
/// §Encoding): big-endian integers, u8-length-prefixed labels and ids, fixed-size fields raw.
struct ByteEncoder {
    var bytes: [UInt8] = []
    init(label: String) { string(label) }
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u32(_ v: UInt32) { for s in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
    mutating func u64(_ v: UInt64) { for s in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) } }
    mutating func raw(_ b: [UInt8]) { bytes += b }
    /// u8 length then UTF-8 (callers validate: at most 255 bytes).
    mutating func string(_ s: String) { let u = Array(s.utf8); precondition(u.count <= 255); u8(UInt8(u.count)); bytes += u }
    /// u32 count, then each dataset: u8 length ‖ id ‖ 32-byte root (sorted by id).
    mutating func datasets(_ d: [DatasetVersion]) {
        u32(UInt32(d.count))
        for v in d { string(v.id); raw(v.root.bytes) }
    }
}
