// The plane's key hierarchy. One root secret, the KEK, from a sealing provider; everything
// else is derived from it (HKDF-SHA256) or wrapped under it, so every replica given the same
// KEK has the same identity, accepts the same tokens and unwraps the same DEKs, and keeps no
// other state. docs/plane.md §Keys has the derivations and the wrapped-DEK format byte by byte.
import Dataset
import Envelope
import Foundation
import ObjectStore
import Wallet

/// Where the KEK comes from.
public protocol SealingProvider: Sendable {
    var mode: SealingMode { get }
    /// True when the KEK is not protected by a TEE (labelled on every response and log line).
    var isInsecure: Bool { get }
    /// Unseals the KEK (32 bytes, locked memory).
    func unsealKEK() throws -> SecureBytes
}

/// `dev-key-file`: the KEK in a local `cce4-insecure-key-v1` file (mode 0600). Development only.
public struct DevKeyFileSealing: SealingProvider {
    public let path: String
    public init(path: String) { self.path = path }
    public var mode: SealingMode { .devKeyFile }
    public var isInsecure: Bool { true }
    public func unsealKEK() throws -> SecureBytes { try KeyFiles.load(path) }
}

/// The keys of one plane deployment, all from the KEK.
public final class PlaneKeys: Sendable {
    private let kek: SecureBytes
    private let tokenKey: SecureBytes
    private let nonceKey: SecureBytes
    private let metaKey: SecureBytes
    /// MACs key-release challenges, so any replica checks another's (docs/key-release.md).
    public let keyReleaseMACKey: SecureBytes
    /// The plane's secp256k1 identity: HKDF(KEK, "cce4-plane-identity-v1", counter), the first
    /// counter (from 0) giving a valid scalar. Same on every replica.
    public let identity: PrivateKey
    public let isInsecure: Bool

    public static let derivationSalt = Array("cce4-plane-v1".utf8)

    public init(kek: SecureBytes, insecure: Bool) throws {
        guard kek.count == 32 else { throw PlaneError.internalError("the KEK must be 32 bytes") }
        self.kek = kek
        self.isInsecure = insecure
        tokenKey = try Self.derive(kek, "token-mac")
        nonceKey = try Self.derive(kek, "siwe-nonce-mac")
        metaKey = try Self.derive(kek, "version-meta-mac")
        keyReleaseMACKey = try Self.derive(kek, "key-release-challenge-mac")
        identity = try Self.deriveIdentity(kek)
    }

    static func derive(_ kek: SecureBytes, _ label: String) throws -> SecureBytes {
        try derivationSalt.withUnsafeBytes { s in try Array(label.utf8).withUnsafeBytes { i in try HKDF.deriveKey(ikm: kek, salt: s, info: i, length: 32) } }
    }

    /// Reject and retry: a candidate ≥ the group order (or 0) is skipped (probability ~2^-128).
    static func deriveIdentity(_ kek: SecureBytes) throws -> PrivateKey {
        for counter in 0..<256 {
            let k = try derive(kek, "identity-secp256k1/\(counter)")
            if let key = try? k.withUnsafeBytes({ b throws(WalletError) in try PrivateKey(bytes: b) }) { return key }
        }
        throw PlaneError.internalError("no valid identity scalar derived")
    }

    /// A 32-byte MAC of `message` under a derived key: HKDF-Expand(HKDF-Extract(salt="", key),
    /// info = SHA-256(message)), a PRF in `key` (RFC 5869 §3.3).
    static func prf(_ key: SecureBytes, _ message: [UInt8]) throws -> [UInt8] {
        let digest = SHA256Digest.hash(message).bytes
        let out = try digest.withUnsafeBytes { i in try HKDF.deriveKey(ikm: key, salt: UnsafeRawBufferPointer(start: nil, count: 0), info: i, length: 32) }
        return out.withUnsafeBytes { Array($0) }
    }

    func tokenMAC(_ message: [UInt8]) throws -> [UInt8] { try Self.prf(tokenKey, message) }
    func nonceMAC(_ message: [UInt8]) throws -> [UInt8] { try Self.prf(nonceKey, message) }
    func metaMAC(_ message: [UInt8]) throws -> [UInt8] { try Self.prf(metaKey, message) }

    // MARK: DEK wrapping

    public static let wrappedMagic = Array("CCE4WDEK".utf8)

    /// The associated data a wrapped DEK is bound to: "cce4-plane-dek-v1" 0x00 dataset 0x00 u32be(key number).
    public static func wrapAAD(dataset: String, keyNumber: UInt32) -> [UInt8] {
        Array("cce4-plane-dek-v1".utf8) + [0] + Array(dataset.utf8) + [0] + withUnsafeBytes(of: keyNumber.bigEndian) { Array($0) }
    }

    /// Wraps a 32-byte DEK: "CCE4WDEK" ‖ 0x01 ‖ u32be(key number) ‖ one AES256-GCM-HKDF
    /// streaming-AEAD ciphertext (Tink's format: 40-byte header, 32 bytes, 16-byte tag)
    /// under the KEK with `wrapAAD`.
    public func wrap(dek: SecureBytes, dataset: String, keyNumber: UInt32) throws -> [UInt8] {
        try wrap(dek: dek, dataset: dataset, keyNumber: keyNumber, header: nil)
    }

    /// `wrap` with a chosen stream header (test vectors only; nil = random).
    func wrap(dek: SecureBytes, dataset: String, keyNumber: UInt32, header: StreamHeader?) throws -> [UInt8] {
        var plain = dek.withUnsafeBytes { Array($0) }
        defer { secureWipe(&plain) }
        let ct = try StreamEncryptor.encrypt(plain, key: kek, associatedData: Self.wrapAAD(dataset: dataset, keyNumber: keyNumber), header: header)
        return Self.wrappedMagic + [1] + withUnsafeBytes(of: keyNumber.bigEndian) { Array($0) } + ct
    }

    /// Unwraps a DEK made by `wrap`; refuses one bound to another dataset or key number.
    public func unwrap(_ object: [UInt8], dataset: String, keyNumber: UInt32) throws -> SecureBytes {
        guard object.count == 8 + 1 + 4 + 40 + 32 + 16, Array(object[0..<8]) == Self.wrappedMagic, object[8] == 1 else {
            throw PlaneError.internalError("wrapped DEK of \(dataset) is malformed")
        }
        let n = object[9..<13].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard n == keyNumber else { throw PlaneError.internalError("wrapped DEK of \(dataset) has key number \(n), expected \(keyNumber)") }
        let ct = Array(object[13...])
        return try ct.withUnsafeBytes { obj in
            let header = try StreamHeader(parsing: obj)
            let dec = try StreamDecryptor(key: kek, associatedData: Self.wrapAAD(dataset: dataset, keyNumber: keyNumber), header: header, plaintextSize: 32)
            let range = dec.ciphertextRange(forPlaintext: 0..<32)
            return try SecureBytes(count: 32) { out in
                _ = try dec.decrypt(0..<32, ciphertext: UnsafeRawBufferPointer(rebasing: obj[Int(range.lowerBound)..<Int(range.upperBound)]), into: out)
            }
        }
    }
}

/// Wrapped DEKs in the object store, beside the dataset: `<dataset>/plane/dek/<n>`, n = 1, 2, …
/// (a new one on rotation; the highest is current). Created with create-if-absent, so two
/// replicas rotating at once cannot overwrite each other's key.
struct DEKStore: Sendable {
    let store: any ObjectStore
    let keys: PlaneKeys

    static func prefix(_ dataset: String) -> String { "\(dataset)/plane/dek/" }
    static func key(_ dataset: String, _ n: UInt32) throws -> ObjectKey { try ObjectKey(prefix(dataset) + String(n)) }

    /// Key numbers present, ascending.
    func numbers(_ dataset: String) throws -> [UInt32] {
        try store.listAll(prefix: Self.prefix(dataset)).compactMap { UInt32($0.key.rawValue.dropFirst(Self.prefix(dataset).count)) }.sorted()
    }

    /// Makes a fresh DEK as the next key number; returns its number.
    @discardableResult
    func rotate(_ dataset: String) throws -> UInt32 {
        for _ in 0..<8 {
            let last = try numbers(dataset).last ?? 0
            guard last < UInt32.max - 1 else { throw PlaneError.unavailable("the key numbers of '\(dataset)' in the store are exhausted or corrupt") }
            let n = last + 1
            let dek = try SecureBytes.random(count: 32)
            do {
                try store.put(try Self.key(dataset, n), try keys.wrap(dek: dek, dataset: dataset, keyNumber: n), ifAbsent: true)
                return n
            } catch let e as ObjectStoreError where e.code == .alreadyExists {
                continue // another replica made key n meanwhile: take the next number
            }
        }
        throw PlaneError.conflict("could not make a new key for \(dataset): too many concurrent rotations")
    }

    func dek(_ dataset: String, _ n: UInt32) throws -> SecureBytes {
        let obj: [UInt8]
        do { obj = try store.get(try Self.key(dataset, n)).bytes } catch let e as ObjectStoreError where e.code == .notFound {
            throw PlaneError.notFound("dataset '\(dataset)' has no key \(n)")
        }
        return try keys.unwrap(obj, dataset: dataset, keyNumber: n)
    }
}
