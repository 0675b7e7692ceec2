// The hashes that tie the protocol together (docs/key-release.md §Byte layouts): the report
// data the evidence binds, the exchange hash the lease carries, the transcript the wrap keys
// are derived from, the challenge MAC, and the ledger payloads.
import Envelope
import Ledger
import Wallet

public enum KeyReleaseBinding {
    public static let reportDataLabel = "cce4long/key-release/v1/report-data"
    public static let exchangeLabel = "cce4long/key-release/v1/exchange"
    public static let transcriptLabel = "cce4long/key-release/v1/transcript"
    public static let wrapLabel = "cce4long/key-release/v1/wrap"
    public static let challengeLabel = "cce4long/key-release/v1/challenge"
    public static let releaseLabel = "cce4long/key-release/v1/release"
    public static let refusedLabel = "cce4long/key-release/v1/refused"
    public static let accessLogLabel = "cce4long/key-release/v1/access-log"

    /// The 64 bytes the evidence must carry: SHA-512(label ‖ session ‖ nonce ‖ datasets ‖
    /// CVM public key ‖ credential hash).
    public static func reportData(session: [UInt8], nonce: [UInt8], datasets: [DatasetVersion], publicKey: [UInt8], credentialHash: [UInt8]) -> [UInt8] {
        var e = ByteEncoder(label: reportDataLabel)
        e.raw(session); e.raw(nonce); e.datasets(datasets); e.raw(publicKey); e.raw(credentialHash)
        return Digest.sha512(e.bytes)
    }

    /// SHA-256(label ‖ report data ‖ CVM public key ‖ plane public key ‖ plane address): the
    /// lease's `exchange`, so the plane identity's signature covers its ephemeral key.
    public static func exchange(reportData: [UInt8], publicKey: [UInt8], planePublicKey: [UInt8], plane: Address) -> [UInt8] {
        var e = ByteEncoder(label: exchangeLabel)
        e.raw(reportData); e.raw(publicKey); e.raw(planePublicKey); e.raw(plane.bytes)
        return Digest.sha256(e.bytes)
    }

    /// SHA-256(label ‖ exchange ‖ SHA-256(lease text)): the HKDF salt of every wrap key.
    public static func transcript(exchange: [UInt8], leaseMessage: String) -> [UInt8] {
        var e = ByteEncoder(label: transcriptLabel)
        e.raw(exchange); e.raw(Digest.sha256(Array(leaseMessage.utf8)))
        return Digest.sha256(e.bytes)
    }

    /// HKDF-SHA256(ikm = X25519 shared secret, salt = transcript, info = label ‖ id ‖ root, 32).
    public static func wrapKey(shared: SecureBytes, transcript: [UInt8], dataset: DatasetVersion) throws(KeyReleaseError) -> SecureBytes {
        var info = ByteEncoder(label: wrapLabel)
        info.string(dataset.id); info.raw(dataset.root.bytes)
        do {
            return try transcript.withUnsafeBytes { s in try info.bytes.withUnsafeBytes { i in try HKDF.deriveKey(ikm: shared, salt: s, info: i, length: 32) } }
        } catch { throw .internalFailure("HKDF failed: \(error)") }
    }

    /// Wraps one DEK: AES-256-GCM under `wrapKey`, zero nonce, no associated data.
    public static func wrap(_ dek: SecureBytes, shared: SecureBytes, transcript: [UInt8], dataset: DatasetVersion) throws(KeyReleaseError) -> [UInt8] {
        try KeyWrapCipher.seal(key: try wrapKey(shared: shared, transcript: transcript, dataset: dataset), dek)
    }

    /// Unwraps one DEK; `.tamperedKey` when the tag does not verify.
    public static func unwrap(_ sealed: [UInt8], shared: SecureBytes, transcript: [UInt8], dataset: DatasetVersion) throws(KeyReleaseError) -> SecureBytes {
        guard let k = try KeyWrapCipher.open(key: try wrapKey(shared: shared, transcript: transcript, dataset: dataset), sealed) else {
            throw .tamperedKey("the wrapped key of '\(dataset.id)' does not authenticate: it was altered in transit or wrapped for another exchange; nothing was mounted")
        }
        return k
    }

    static func challengeBody(session: [UInt8], nonce: [UInt8], expiresAt: UInt64, datasets: [DatasetVersion], credentialHash: [UInt8]) -> [UInt8] {
        var e = ByteEncoder(label: challengeLabel)
        e.raw(session); e.raw(nonce); e.u64(expiresAt); e.datasets(datasets); e.raw(credentialHash)
        return e.bytes
    }

    /// The `key.release` event's payload: SHA-256(label ‖ session ‖ datasets ‖ signer).
    public static func releasePayload(session: [UInt8], datasets: [DatasetVersion], signer: Address) -> [UInt8] {
        var e = ByteEncoder(label: releaseLabel)
        e.raw(session); e.datasets(datasets); e.raw(signer.bytes)
        return Digest.sha256(e.bytes)
    }

    /// The `key.refused` event's payload: SHA-256(label ‖ session ‖ code ‖ signer or 20 zero bytes).
    public static func refusalPayload(session: [UInt8], code: KeyReleaseError.Code, signer: Address?) -> [UInt8] {
        var e = ByteEncoder(label: refusedLabel)
        e.raw(session); e.string(code.rawValue); e.raw((signer ?? .zero).bytes)
        return Digest.sha256(e.bytes)
    }

    /// The `access.log` event's payload: SHA-256(label ‖ session ‖ root ‖ u64 entries).
    public static func accessLogPayload(session: [UInt8], root: [UInt8], entries: UInt64) -> [UInt8] {
        var e = ByteEncoder(label: accessLogLabel)
        e.raw(session); e.raw(root); e.u64(entries)
        return Digest.sha256(e.bytes)
    }
}

/// The access log's Merkle root: RFC 6962 hashing (the ledger's `Merkle`) over the entries'
/// leaf bytes in open order; the empty log's root is SHA-256 of nothing.
public enum AccessLogTree {
    public static func root(leaves: [[UInt8]]) -> [UInt8] {
        guard !leaves.isEmpty else { return Merkle.emptyRoot }
        let tree = MerkleTree(leafHashes: leaves.map(Merkle.leafHash))
        return tree.root(size: tree.size)
    }
}
