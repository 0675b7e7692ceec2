// The messages of attested key release (docs/key-release.md), as the JSON bodies of the four
// routes. Fields keep their wire form (hex strings, EIP-55 addresses, Unix seconds); the typed
// accessors parse them and throw `.malformed` with the field's name, so every body from the
// network goes through one checked path.
import Envelope
import Foundation
import Wallet

/// A dataset version: its id and its root hash.
public struct DatasetVersion: Codable, Sendable, Hashable, Comparable {
    public let id: String
    public let root: SHA256Digest

    public init(id: String, root: SHA256Digest) throws(KeyReleaseError) {
        do { try AssociatedData.validateDatasetID(id) } catch { throw .malformed("dataset id '\(id.prefix(70))': \(error)") }
        self.id = id
        self.root = root
    }

    enum CodingKeys: String, CodingKey { case id, root }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let id = try c.decode(String.self, forKey: .id)
        let hex = try c.decode(String.self, forKey: .root)
        guard hex.count == 64, let bytes = Hex.decode(hex), let root = try? SHA256Digest(bytes: bytes) else {
            throw KeyReleaseError.malformed("dataset root must be 64 lowercase hex digits")
        }
        try self.init(id: id, root: root)
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(root.hex, forKey: .root)
    }
    public static func < (a: DatasetVersion, b: DatasetVersion) -> Bool { a.id < b.id }

    /// Checks a list: 1 to 32 versions, sorted by id, no id twice.
    static func validate(_ list: [DatasetVersion], _ what: String) throws(KeyReleaseError) {
        guard (1...32).contains(list.count) else { throw .malformed("\(what): 1 to 32 datasets, not \(list.count)") }
        for i in 1..<list.count where !(list[i - 1].id < list[i].id) {
            throw .malformed("\(what): datasets must be sorted by id with no id twice ('\(list[i].id)')")
        }
    }
}

/// Fixed-size hex fields of the wire format.
enum Field {
    static func hex(_ s: String, _ count: Int, _ name: String) throws(KeyReleaseError) -> [UInt8] {
        guard s.utf8.count == count * 2, s.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }), let b = Hex.decode(s) else {
            throw .malformed("\(name) must be \(count * 2) lowercase hex digits")
        }
        return b
    }
    static func address(_ s: String, _ name: String) throws(KeyReleaseError) -> Address {
        do { return try Address(s) } catch { throw .malformed("\(name) is not an address: \(error)") }
    }
    static func signature(_ s: String, _ name: String) throws(KeyReleaseError) -> Signature {
        do { return try Signature(hex: s) } catch { throw .malformed("\(name) is not a 65-byte signature: \(error)") }
    }
    static func base64(_ s: String, max: Int, _ name: String) throws(KeyReleaseError) -> [UInt8] {
        guard s.utf8.count <= (max + 2) / 3 * 4, let d = Data(base64Encoded: s) else { throw .malformed("\(name) is not base64 of at most \(max) bytes") }
        return Array(d)
    }
    /// A value printed on one line of a signed text: printable ASCII, no spaces.
    static func token(_ s: String, max: Int, _ name: String) throws(KeyReleaseError) {
        let u = Array(s.utf8)
        guard (1...max).contains(u.count), u.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            throw .malformed("\(name) must be 1 to \(max) printable ASCII characters without spaces")
        }
    }
}

// MARK: - Job Credential

/// A consumer's statement, signed with EIP-191 `personal_sign` by their wallet: "run job `job`,
/// in an image measuring `measurement`, over these dataset versions, until `expires`".
/// The signed text is `message` (docs/key-release.md §Job Credential); the JSON carries the
/// fields and the signature, and verifiers rebuild the text from the fields.
public struct JobCredential: Codable, Sendable, Equatable {
    public var version: Int
    public var job: String
    /// The consumer's address (EIP-55): the signature must recover to it.
    public var signer: String
    public var datasets: [DatasetVersion]
    /// The expected TEE measurement (TDX MRTD / SNP MEASUREMENT), 96 hex digits.
    public var measurement: String
    /// The job image's digest, e.g. "sha256:…", for humans and the manifest.
    public var image: String
    public var expires: UInt64
    /// 0x-hex r ‖ s ‖ v (65 bytes).
    public var signature: String

    public static let header = "cce4long job credential v1"

    /// Makes and signs a credential.
    public static func make(job: String, datasets: [DatasetVersion], measurement: [UInt8], image: String, expires: UInt64,
                            key: PrivateKey) throws(KeyReleaseError) -> JobCredential {
        var c = JobCredential(version: 1, job: job, signer: key.address.checksummed, datasets: datasets.sorted(),
                              measurement: Hex.encode(measurement), image: image, expires: expires, signature: "")
        let text = try c.message()
        do { c.signature = try key.signPersonal(Array(text.utf8)).hex } catch { throw .internalFailure("cannot sign the credential: \(error)") }
        return c
    }

    /// The signed text, rebuilt from the fields (validating each).
    public func message() throws(KeyReleaseError) -> String {
        guard version == 1 else { throw .malformed("credential version \(version) is not supported (1 is)") }
        try Field.token(job, max: 128, "credential job")
        let who = try Field.address(signer, "credential signer")
        try DatasetVersion.validate(datasets, "credential")
        _ = try Field.hex(measurement, 48, "credential measurement")
        try Field.token(image, max: 200, "credential image")
        var lines = [Self.header, "job: \(job)", "signer: \(who.checksummed)"]
        for d in datasets { lines.append("dataset: \(d.id) \(d.root.hex)") }
        lines += ["measurement: \(measurement)", "image: \(image)", "expires: \(expires)"]
        return lines.joined(separator: "\n")
    }

    /// SHA-256 of the signed text: what the report data binds.
    public func hash() throws(KeyReleaseError) -> [UInt8] { Digest.sha256(Array(try message().utf8)) }

    /// Checks the signature (it must recover to `signer`) and the expiry; returns the signer.
    public func verify(now: UInt64) throws(KeyReleaseError) -> Address {
        let text = try message()
        let claimed = try Field.address(signer, "credential signer")
        let sig = try Field.signature(signature, "credential signature")
        let actual: Address
        do { actual = try PersonalMessage.signer(of: Array(text.utf8), signature: sig) } catch {
            throw KeyReleaseError(.credentialSignature, "the credential's signature does not verify: \(error)")
        }
        guard actual == claimed else {
            throw KeyReleaseError(.credentialSignature, "the credential names signer \(claimed) but was signed by \(actual)")
        }
        guard now < expires else { throw KeyReleaseError(.credentialExpired, "the credential expired at \(expires) (now \(now)); make a new one with `cce4 job credential`") }
        return actual
    }

    public var measurementBytes: [UInt8] { Hex.decode(measurement) ?? [] }
}

// MARK: - Challenge

/// Step 1, client → plane (`POST /v1/key-release/challenge`): what the release will be for.
public struct ChallengeRequest: Codable, Sendable, Equatable {
    public var datasets: [DatasetVersion]
    /// Hex SHA-256 of the Job Credential's signed text.
    public var credentialHash: String
    public init(datasets: [DatasetVersion], credentialHash: [UInt8]) {
        self.datasets = datasets.sorted(); self.credentialHash = Hex.encode(credentialHash)
    }
}

/// Step 2, plane → client: a single-use session, stateless on the plane (the MAC is the
/// plane's memory of it; single use is enforced by the ledger at release).
public struct Challenge: Codable, Sendable, Equatable {
    /// 16 random bytes, hex.
    public var session: String
    /// 32 random bytes, hex.
    public var nonce: String
    public var datasets: [DatasetVersion]
    public var credentialHash: String
    public var expiresAt: UInt64
    /// HMAC-SHA256 under the plane's challenge key over all the fields above, hex.
    public var mac: String
}

// MARK: - Release

/// Evidence as the provider returned it.
public struct EvidenceMessage: Codable, Sendable, Equatable {
    public var provider: String
    /// Base64.
    public var outblob: String
    /// Base64 (SEV-SNP certificate table, or empty).
    public var auxblob: String
    public init(provider: String, outblob: String, auxblob: String) { self.provider = provider; self.outblob = outblob; self.auxblob = auxblob }
}

/// Step 3, client → plane (`POST /v1/key-release`).
public struct ReleaseRequest: Codable, Sendable, Equatable {
    public var challenge: Challenge
    public var evidence: EvidenceMessage
    /// The CVM's ephemeral X25519 public key, hex (32 bytes).
    public var publicKey: String
    public var credential: JobCredential
    public init(challenge: Challenge, evidence: EvidenceMessage, publicKey: String, credential: JobCredential) {
        self.challenge = challenge; self.evidence = evidence; self.publicKey = publicKey; self.credential = credential
    }
}

/// One dataset key, wrapped for the CVM.
public struct WrappedKey: Codable, Sendable, Equatable {
    public var dataset: String
    public var root: String
    /// AES-256-GCM(wrap key, zero nonce, DEK) = ciphertext ‖ 16-byte tag, hex.
    public var wrapped: String
}

/// Step 4, plane → client.
public struct ReleaseResponse: Codable, Sendable, Equatable {
    public var session: String
    /// The plane's ephemeral X25519 public key, hex.
    public var planePublicKey: String
    public var keys: [WrappedKey]
    public var lease: Lease
}

// MARK: - Lease

/// The plane's signed statement that `holder` may keep using the released keys until
/// `expiresAt`. Signed with EIP-191 by the plane identity; `message` is the signed text.
public struct Lease: Codable, Sendable, Equatable {
    public var session: String
    /// Hex SHA-256 binding the lease to one key exchange (docs/key-release.md §Transcript).
    public var exchange: String
    public var plane: String
    public var holder: String
    public var job: String
    public var datasets: [DatasetVersion]
    public var issuedAt: UInt64
    public var expiresAt: UInt64
    /// The Job Credential's expiry: no renewal goes past it.
    public var notAfter: UInt64
    public var signature: String

    public static let header = "cce4long lease v1"

    public func message() throws(KeyReleaseError) -> String {
        _ = try Field.hex(session, 16, "lease session")
        _ = try Field.hex(exchange, 32, "lease exchange")
        let p = try Field.address(plane, "lease plane"), h = try Field.address(holder, "lease holder")
        try Field.token(job, max: 128, "lease job")
        try DatasetVersion.validate(datasets, "lease")
        guard issuedAt <= expiresAt, expiresAt <= notAfter else { throw .malformed("lease times out of order (issued ≤ expires ≤ not-after)") }
        var lines = [Self.header, "session: \(session)", "exchange: \(exchange)", "plane: \(p.checksummed)", "holder: \(h.checksummed)", "job: \(job)"]
        for d in datasets { lines.append("dataset: \(d.id) \(d.root.hex)") }
        lines += ["issued: \(issuedAt)", "expires: \(expiresAt)", "not-after: \(notAfter)"]
        return lines.joined(separator: "\n")
    }

    mutating func sign(_ key: PrivateKey) throws(KeyReleaseError) {
        plane = key.address.checksummed
        let text = try message()
        do { signature = try key.signPersonal(Array(text.utf8)).hex } catch { throw .internalFailure("cannot sign the lease: \(error)") }
    }

    /// Checks that `identity` signed this lease (EIP-191) and that it names `identity` as the plane.
    public func verify(identity: Address) throws(KeyReleaseError) {
        let text = try message()
        let sig = try Field.signature(signature, "lease signature")
        let who: Address
        do { who = try PersonalMessage.signer(of: Array(text.utf8), signature: sig) } catch {
            throw KeyReleaseError(.leaseInvalid, "the lease signature does not verify: \(error)")
        }
        guard who == identity, (try? Field.address(plane, "")) == identity else {
            throw KeyReleaseError(.leaseInvalid, "the lease is signed by \(who), not the plane identity \(identity)")
        }
    }
}

/// `POST /v1/leases/renew`: the current lease; the answer is a new `Lease`.
public struct LeaseRenewRequest: Codable, Sendable, Equatable {
    public var lease: Lease
    public init(lease: Lease) { self.lease = lease }
}

// MARK: - Access log

/// `POST /v1/access-log`, at unmount: the Merkle root of the job's open log (docs/key-release.md §Access log).
public struct AccessLogSubmission: Codable, Sendable, Equatable {
    public var lease: Lease
    /// Hex Merkle root (RFC 6962 hashing) of the log's entries.
    public var root: String
    public var entries: UInt64
    public init(lease: Lease, root: [UInt8], entries: UInt64) { self.lease = lease; self.root = Hex.encode(root); self.entries = entries }
}

/// The plane's answer: what it recorded.
public struct AccessLogReceipt: Codable, Sendable, Equatable {
    public var session: String
    public var root: String
    public var entries: UInt64
    /// The ledger indexes of the `access.log` events, one per dataset.
    public var ledgerIndexes: [UInt64]
}
