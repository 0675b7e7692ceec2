// secp256k1 keys and Ethereum signatures: deterministic ECDSA (RFC 6979 with HMAC-SHA256,
// the nonce eth-keys and libsecp256k1 use, so signatures agree byte for byte), low-s
// normalisation, recovery ids, and public-key recovery.
import Envelope
internal import COpenSSL

/// The order n of the secp256k1 group, big-endian.
let curveOrder: [UInt8] = Hex.decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")!
/// n / 2, big-endian: the largest s Ethereum accepts.
let halfOrder: [UInt8] = Hex.decode("7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0")!

/// Big-endian comparison of equal-length byte strings (public values only: not constant time).
func compareBE(_ a: [UInt8], _ b: [UInt8]) -> Int {
    precondition(a.count == b.count)
    for i in 0..<a.count where a[i] != b[i] { return a[i] < b[i] ? -1 : 1 }
    return 0
}

/// A secp256k1 private key, held in locked memory and wiped when released.
public final class PrivateKey: Sendable {
    let secret: SecureBytes
    /// The 65-byte uncompressed public key.
    public let publicKey: PublicKey

    /// Takes the 32 key bytes (copied into locked memory; the caller wipes its copy).
    public init(bytes: UnsafeRawBufferPointer) throws(WalletError) {
        guard bytes.count == 32 else { throw .invalidPrivateKey }
        var pub = [UInt8](repeating: 0, count: 65)
        guard cce4_secp256k1_pubkey(bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), &pub) == 1 else { throw .invalidPrivateKey }
        do { secret = try SecureBytes(copying: bytes) } catch { throw .crypto("\(error)") }
        publicKey = PublicKey(uncompressed: pub)
    }

    public convenience init(bytes: [UInt8]) throws(WalletError) {
        try self.init(bytes: bytes.withUnsafeBytes { UnsafeRawBufferPointer($0) })
    }

    /// A fresh key from the CSPRNG (retries the ~2^-128 chance of an invalid scalar).
    public static func generate() throws(WalletError) -> PrivateKey {
        while true {
            var raw: [UInt8]
            do { raw = try Random.bytes(32) } catch { throw .crypto("\(error)") }
            defer { secureWipe(&raw) }
            if let key = try? PrivateKey(bytes: raw) { return key }
        }
    }

    public var address: Address { publicKey.address }

    /// Runs `body` over the raw 32 key bytes (for writing a keystore).
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try secret.withUnsafeBytes(body)
    }

    /// Signs a 32-byte hash: deterministic (RFC 6979), low-s, with its recovery id.
    public func sign(hash: [UInt8]) throws(WalletError) -> Signature {
        precondition(hash.count == 32, "ECDSA here signs 32-byte hashes")
        var sig = [UInt8](repeating: 0, count: 64)
        var recid: Int32 = 0
        let ok = secret.withUnsafeBytes { d in
            cce4_secp256k1_sign(d.baseAddress!.assumingMemoryBound(to: UInt8.self), hash, &sig, &recid)
        }
        guard ok == 1 else { throw .crypto("secp256k1 signing failed") }
        return Signature(r: Array(sig[0..<32]), s: Array(sig[32..<64]), recoveryID: UInt8(recid))
    }

    /// EIP-191 `personal_sign` of `message`.
    public func signPersonal(_ message: some Collection<UInt8>) throws(WalletError) -> Signature {
        try sign(hash: PersonalMessage.hash(message))
    }
}


/// An uncompressed secp256k1 public key (0x04 || X || Y).
public struct PublicKey: Hashable, Sendable {
    public let uncompressed: [UInt8]
    init(uncompressed: [UInt8]) { self.uncompressed = uncompressed }

    /// The Ethereum address: the last 20 bytes of Keccak-256(X || Y).
    public var address: Address { Address(bytes: Array(Keccak256.hash(uncompressed[1...]).suffix(20))) }
}

/// An ECDSA signature with its recovery id, in Ethereum's 65-byte r || s || v form.
public struct Signature: Hashable, Sendable, CustomStringConvertible {
    public let r: [UInt8]
    public let s: [UInt8]
    /// 0 or 1 (2 and 3, for r >= n, never occur in practice and are refused when parsing).
    public let recoveryID: UInt8

    public init(r: [UInt8], s: [UInt8], recoveryID: UInt8) {
        self.r = r; self.s = s; self.recoveryID = recoveryID
    }

    /// Parses r || s || v with v in {27, 28} or {0, 1}.
    public init(bytes: [UInt8]) throws(WalletError) {
        guard bytes.count == 65 else { throw .invalidSignature("a signature is 65 bytes (r, s, v), got \(bytes.count)") }
        let v = bytes[64]
        let id: UInt8
        switch v {
        case 27, 28: id = v - 27
        case 0, 1: id = v
        default: throw .invalidSignature("v must be 27 or 28 (or 0 or 1), got \(v)")
        }
        self.init(r: Array(bytes[0..<32]), s: Array(bytes[32..<64]), recoveryID: id)
    }

    /// Parses 0x-prefixed (or bare) hex of the 65 bytes.
    public init(hex: String) throws(WalletError) {
        let body = hex.hasPrefix("0x") || hex.hasPrefix("0X") ? String(hex.dropFirst(2)) : hex
        guard let b = Hex.decode(body) else { throw .invalidSignature("not hex") }
        try self.init(bytes: b)
    }

    /// r || s || v with v = 27 + recovery id (what `personal_sign` returns).
    public var bytes: [UInt8] { r + s + [27 + recoveryID] }
    public var hex: String { "0x" + Hex.encode(bytes) }
    public var description: String { hex }

    /// The public key that made this signature over `hash`. Refuses high s (EIP-2) unless
    /// `allowHighS` (only for reading legacy data).
    public func recover(hash: [UInt8], allowHighS: Bool = false) throws(WalletError) -> PublicKey {
        guard hash.count == 32 else { throw .invalidSignature("the signed hash must be 32 bytes") }
        if !allowHighS && compareBE(s, halfOrder) > 0 { throw .highS }
        var pub = [UInt8](repeating: 0, count: 65)
        let sig = r + s
        guard cce4_secp256k1_recover(hash, sig, Int32(recoveryID), &pub) == 1 else {
            throw .invalidSignature("r or s out of range, or no public key recovers from it")
        }
        return PublicKey(uncompressed: pub)
    }

    /// The address that signed `hash`.
    public func signer(hash: [UInt8]) throws(WalletError) -> Address { try recover(hash: hash).address }
}

/// EIP-191 version 0x45 ("personal_sign"): Keccak-256 of
/// "\u{19}Ethereum Signed Message:\n" + decimal length + message.
public enum PersonalMessage {
    public static func hash(_ message: some Collection<UInt8>) -> [UInt8] {
        var k = Keccak256()
        k.update(Array("\u{19}Ethereum Signed Message:\n\(message.count)".utf8))
        k.update(message)
        return k.finalize()
    }

    /// The address whose key signed `message` with `personal_sign`.
    public static func signer(of message: some Collection<UInt8>, signature: Signature) throws(WalletError) -> Address {
        try signature.signer(hash: hash(message))
    }
}
