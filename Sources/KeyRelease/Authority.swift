// The plane's side of attested key release, transport-agnostic: the HTTP server maps four
// routes onto `handle(path:body:)` (or onto the typed methods). Stateless across replicas:
// challenges are MAC'd, single use is enforced by the ledger, keys come from the plane.
import Attestation
import Envelope
import Foundation
import Ledger
import Logging
import Synchronization
import Wallet

/// Where the plane's dataset keys come from (the plane unwraps them from its key store).
public protocol DatasetKeyProvider: Sendable {
    /// The DEK of `dataset` at version `root`, in locked memory (32 bytes).
    func key(dataset: String, root: SHA256Digest) throws -> SecureBytes
}

/// Checks key-release requests in the documented order and answers them
/// (docs/key-release.md §What the plane checks).
///
/// Thread safety: the ledger engine is not thread-safe, so every use of it holds `ledgerLock`;
/// nothing else is shared. No network I/O happens under the lock; ledger appends (fsync) do.
public final class KeyReleaseAuthority: @unchecked Sendable {
    /// The routes, relative to the plane's root.
    public enum Route {
        public static let challenge = "/v1/key-release/challenge"
        public static let release = "/v1/key-release"
        public static let renew = "/v1/leases/renew"
        public static let accessLog = "/v1/access-log"
    }

    /// The largest request body accepted (evidence is at most 64 KiB, base64 in JSON).
    public static let maximumBodySize = 256 * 1024
    /// How long a challenge may be answered.
    public let challengeLifetime: UInt64
    public let leaseTTL: UInt64
    public let identity: PrivateKey
    private let ledger: any LedgerEngine
    private let ledgerLock = Mutex<Void>(())
    private let policy: Policy
    private let macKey: SecureBytes
    private let keys: any DatasetKeyProvider
    private let clock: @Sendable () -> UInt64
    private let collateral: @Sendable ([UInt8]) throws -> CollateralSource
    private let logger: Logger

    /// - Parameters:
    ///   - policy: the attestation policy with the allow-listed measurements; its
    ///     `expectedReportData` is replaced per request by the binding, and `allowSimulated`
    ///     by the argument of that name.
    ///   - macKey: the challenge MAC key (the plane derives it from its KEK; every replica has it).
    ///   - collateral: the verification collateral for evidence bytes (TDX/SNP); the default
    ///     finds none, which suits simulated evidence only.
    ///   - clock: Unix seconds.
    public init(ledger: any LedgerEngine, policy: Policy, allowSimulated: Bool, identity: PrivateKey, macKey: SecureBytes,
                keys: any DatasetKeyProvider, leaseTTL: UInt64 = 300, challengeLifetime: UInt64 = 60,
                clock: @escaping @Sendable () -> UInt64 = { UInt64(Date().timeIntervalSince1970) },
                collateral: @escaping @Sendable ([UInt8]) throws -> CollateralSource = { try AttestationVerifier.collateral(for: $0, directory: nil) },
                logger: Logger = Logger(label: "cce4.key-release")) {
        self.ledger = ledger
        var p = policy
        p.allowSimulated = allowSimulated
        self.policy = p
        self.identity = identity
        self.macKey = macKey
        self.keys = keys
        self.leaseTTL = max(1, leaseTTL)
        self.challengeLifetime = challengeLifetime
        self.clock = clock
        self.collateral = collateral
        self.logger = logger
    }

    // MARK: transport-agnostic entry point

    /// Answers one request: `path` is one of `Route`, `body` the JSON request. Returns the
    /// status and the JSON answer (RFC 9457 problem+json on failure; its `code` member is
    /// `KeyReleaseError.Code`). Routes other than the four answer 404.
    public func handle(path: String, body: [UInt8]) -> (status: Int, body: [UInt8]) {
        do {
            guard body.count <= Self.maximumBodySize else { throw KeyReleaseError.malformed("request body larger than \(Self.maximumBodySize) bytes") }
            switch path {
            case Route.challenge: return (201, try encode(try challenge(try decode(ChallengeRequest.self, body))))
            case Route.release: return (200, try encode(try release(try decode(ReleaseRequest.self, body))))
            case Route.renew: return (200, try encode(try renew(try decode(LeaseRenewRequest.self, body))))
            case Route.accessLog: return (201, try encode(try recordAccessLog(try decode(AccessLogSubmission.self, body))))
            default: throw KeyReleaseError(.malformed, status: 404, "no route \(path.prefix(100))")
            }
        } catch let e as KeyReleaseError {
            return (e.status, (try? encode(e.problem)) ?? [])
        } catch {
            let e = KeyReleaseError.internalFailure("\(error)")
            return (e.status, (try? encode(e.problem)) ?? [])
        }
    }

    func decode<T: Decodable>(_ t: T.Type, _ body: [UInt8]) throws(KeyReleaseError) -> T {
        do { return try JSONDecoder().decode(t, from: Data(body)) } catch let e as KeyReleaseError { throw e } catch let e as DecodingError {
            throw .malformed("request is not a valid \(T.self): \(Self.describe(e))")
        } catch { throw .malformed("request is not a valid \(T.self)") }
    }

    static func describe(_ e: DecodingError) -> String {
        func path(_ c: DecodingError.Context) -> String { c.codingPath.map(\.stringValue).joined(separator: ".") }
        switch e {
        case .keyNotFound(let k, let c): return "missing \((path(c).isEmpty ? "" : path(c) + ".") + k.stringValue)"
        case .typeMismatch(_, let c), .valueNotFound(_, let c): return "wrong type at \(path(c))"
        case .dataCorrupted(let c): return "not JSON or bad value at \(path(c))"
        @unknown default: return "undecodable"
        }
    }

    func encode<T: Encodable>(_ v: T) throws(KeyReleaseError) -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        do { return Array(try enc.encode(v)) } catch { throw .internalFailure("cannot encode the answer") }
    }

    // MARK: challenge

    /// Step 2: a fresh session and nonce, MAC'd with everything the release will be for.
    public func challenge(_ r: ChallengeRequest) throws(KeyReleaseError) -> Challenge {
        try DatasetVersion.validate(r.datasets, "challenge request")
        let ch = try Field.hex(r.credentialHash, 32, "credentialHash")
        let session: [UInt8], nonce: [UInt8]
        do { session = try Random.bytes(16); nonce = try Random.bytes(32) } catch { throw .internalFailure("no randomness: \(error)") }
        let expires = clock() + challengeLifetime
        let mac = Digest.hmac(key: macKey, KeyReleaseBinding.challengeBody(session: session, nonce: nonce, expiresAt: expires, datasets: r.datasets, credentialHash: ch))
        return Challenge(session: Hex.encode(session), nonce: Hex.encode(nonce), datasets: r.datasets, credentialHash: r.credentialHash,
                         expiresAt: expires, mac: Hex.encode(mac))
    }

    /// Verifies a challenge this plane (or a replica sharing its key) issued, still fresh.
    func verify(_ c: Challenge, now: UInt64) throws(KeyReleaseError) -> (session: [UInt8], nonce: [UInt8], credentialHash: [UInt8]) {
        let session = try Field.hex(c.session, 16, "challenge.session")
        let nonce = try Field.hex(c.nonce, 32, "challenge.nonce")
        let ch = try Field.hex(c.credentialHash, 32, "challenge.credentialHash")
        let mac = try Field.hex(c.mac, 32, "challenge.mac")
        try DatasetVersion.validate(c.datasets, "challenge")
        let expected = Digest.hmac(key: macKey, KeyReleaseBinding.challengeBody(session: session, nonce: nonce, expiresAt: c.expiresAt, datasets: c.datasets, credentialHash: ch))
        guard constantTimeEquals(mac, expected) else {
            throw KeyReleaseError(.challengeInvalid, "the challenge was not issued by this plane (MAC mismatch); ask for a new one")
        }
        guard now < c.expiresAt else {
            throw KeyReleaseError(.challengeExpired, "the challenge expired at \(c.expiresAt) (now \(now)); ask for a new one and answer within \(challengeLifetime) s")
        }
        return (session, nonce, ch)
    }

    // MARK: release

    /// Steps 3-4: checks everything, records the release on the ledger, answers with the
    /// wrapped keys and a signed lease. Every refusal after the challenge verifies is recorded
    /// as `key.refused`.
    public func release(_ r: ReleaseRequest) throws(KeyReleaseError) -> ReleaseResponse {
        let now = clock()
        let (session, nonce, credentialHash) = try verify(r.challenge, now: now)
        let datasets = r.challenge.datasets
        var signer: Address? = nil
        do throws(KeyReleaseError) {
            return try releaseChecked(r, now: now, session: session, nonce: nonce, credentialHash: credentialHash, signer: &signer)
        } catch {
            throw refuse(error, session: session, datasets: datasets, signer: signer)
        }
    }

    private func releaseChecked(_ r: ReleaseRequest, now: UInt64, session: [UInt8], nonce: [UInt8], credentialHash: [UInt8],
                                signer: inout Address?) throws(KeyReleaseError) -> ReleaseResponse {
        let datasets = r.challenge.datasets
        // 2. The request's own fields.
        let cvmPublic = try Field.hex(r.publicKey, 32, "publicKey")
        let evidence = try Field.base64(r.evidence.outblob, max: AttestationVerifier.maximumSize, "evidence.outblob")
        _ = try Field.base64(r.evidence.auxblob, max: 64 * 1024, "evidence.auxblob")
        guard constantTimeEquals(try r.credential.hash(), credentialHash) else {
            throw KeyReleaseError(.credentialMismatch, "the credential is not the one the challenge was issued for")
        }
        // 3. The evidence, with the binding as the expected report data.
        let binding = KeyReleaseBinding.reportData(session: session, nonce: nonce, datasets: datasets, publicKey: cvmPublic, credentialHash: credentialHash)
        var p = policy
        p.expectedReportData = binding
        p.allowAnyReportData = false
        let result: AttestationResult
        do {
            result = try AttestationVerifier.verify(evidence, collateral: try collateral(evidence), policy: p, at: Date(timeIntervalSince1970: TimeInterval(now)))
        } catch let e as AttestationError {
            throw KeyReleaseError(.evidenceInvalid, "the evidence does not verify: \(e)")
        } catch { throw KeyReleaseError(.evidenceInvalid, "the evidence does not verify: \(error)") }
        if case .refused(let violations) = result.verdict { throw Self.refusal(violations) }
        let claims = result.claims
        // 4. The credential: signature, expiry, and that it covers this request and this image.
        let who = try r.credential.verify(now: now)
        signer = who
        for d in datasets where !r.credential.datasets.contains(d) {
            throw KeyReleaseError(.credentialMismatch, "the credential does not name dataset '\(d.id)' at root \(d.root.hex)")
        }
        guard claims.measurement == r.credential.measurementBytes else {
            throw KeyReleaseError(.credentialMismatch, "the evidence's measurement \(Hex.encode(claims.measurement)) is not the credential's \(r.credential.measurement)")
        }
        // 5. The ledger: known versions, an active rental of each dataset by the signer, not replayed.
        let payload = KeyReleaseBinding.releasePayload(session: session, datasets: datasets, signer: who)
        let rentalEnd = try withLedger { ledger throws(KeyReleaseError) -> UInt64 in
            do { try ledger.refresh() } catch { throw KeyReleaseError(.ledgerUnavailable, "cannot read the ledger: \(error)") }
            var end = UInt64.max
            for d in datasets {
                guard let rec = ledger.dataset(d.id) else { throw KeyReleaseError(.unknownVersion, "dataset '\(d.id)' is not registered on the ledger") }
                guard rec.versions.contains(where: { $0.root == d.root.bytes }) else {
                    throw KeyReleaseError(.unknownVersion, "root \(d.root.hex) is not a registered version of '\(d.id)'")
                }
                guard let rental = ledger.activeRental(dataset: d.id, user: who, at: now) else {
                    throw KeyReleaseError(.noRental, "\(who) has no active rental of '\(d.id)' at \(now) (none granted, expired or ended); rent it first")
                }
                end = min(end, rental.userExpires(at: now))
            }
            if Self.recorded(ledger, dataset: datasets[0].id, payload: payload) {
                throw KeyReleaseError(.replayed, "session \(Hex.encode(session)) was already answered; a session is single use: ask for a new challenge")
            }
            return end
        }
        // 6. The keys (before recording: a release we cannot serve is not recorded as one).
        var deks: [SecureBytes] = []
        for d in datasets {
            do { deks.append(try keys.key(dataset: d.id, root: d.root)) } catch {
                throw KeyReleaseError(.keyUnavailable, "the plane cannot load the key of '\(d.id)' at \(d.root.hex): \(error)")
            }
            guard deks.last!.count == 32 else { throw KeyReleaseError(.keyUnavailable, "the key of '\(d.id)' is not 32 bytes") }
        }
        // 7. The exchange and the lease.
        let eph = try X25519KeyPair()
        let shared = try eph.sharedSecret(with: cvmPublic)
        let exchange = KeyReleaseBinding.exchange(reportData: binding, publicKey: cvmPublic, planePublicKey: eph.publicKey, plane: identity.address)
        var lease = Lease(session: Hex.encode(session), exchange: Hex.encode(exchange), plane: identity.address.checksummed, holder: who.checksummed,
                          job: r.credential.job, datasets: datasets, issuedAt: now, expiresAt: min(rentalEnd, now + leaseTTL, r.credential.expires),
                          notAfter: r.credential.expires, signature: "")
        try lease.sign(identity)
        let transcript = KeyReleaseBinding.transcript(exchange: exchange, leaseMessage: try lease.message())
        var wrapped: [WrappedKey] = []
        for (d, dek) in zip(datasets, deks) {
            wrapped.append(WrappedKey(dataset: d.id, root: d.root.hex, wrapped: Hex.encode(try KeyReleaseBinding.wrap(dek, shared: shared, transcript: transcript, dataset: d))))
        }
        // 8. Record the release BEFORE answering; the ledger refuses a second one for this session.
        let event = claims.simulated ? "key.release.simulated" : "key.release"
        try withLedger { ledger throws(KeyReleaseError) in
            for d in datasets {
                do { try ledger.submit(.audit(event: event, dataset: d.id, payloadHash: payload), signer: identity) } catch {
                    if Self.recorded(ledger, dataset: datasets[0].id, payload: payload), d == datasets[0] {
                        throw KeyReleaseError(.replayed, "session \(Hex.encode(session)) was answered by another replica; ask for a new challenge")
                    }
                    throw KeyReleaseError(.ledgerUnavailable, "cannot record the release on the ledger: \(error); no key was released")
                }
            }
        }
        logger.info("key released", metadata: ["session": "\(Hex.encode(session))", "holder": "\(who)", "datasets": "\(datasets.map(\.id))",
                                               "simulated": "\(claims.simulated)", "expires": "\(lease.expiresAt)"])
        return ReleaseResponse(session: Hex.encode(session), planePublicKey: Hex.encode(eph.publicKey), keys: wrapped, lease: lease)
    }

    /// The first policy violation, in the order the checks are documented.
    static func refusal(_ v: [PolicyViolation]) -> KeyReleaseError {
        let text = v.map(\.description).joined(separator: "; ")
        if v.contains(.simulated) { return KeyReleaseError(.simulatedNotAllowed, "simulated evidence is not allowed by this plane's policy (\(text))") }
        if v.contains(.debug) { return KeyReleaseError(.debugRefused, "the evidence comes from a debuggable guest, whose memory is not confidential (\(text))") }
        if v.contains(.measurement) || v.contains(.measurementNotPinned) {
            return KeyReleaseError(.measurementNotAllowed, "the guest's measurement is not on the plane's allow-list (\(text))")
        }
        if v.allSatisfy({ $0 == .reportData }) {
            return KeyReleaseError(.bindingMismatch, "the evidence's report data does not bind this challenge, key and credential (another key or a replayed report)")
        }
        return KeyReleaseError(.policyRefused, "the evidence is refused by the plane's policy: \(text)")
    }

    static func recorded(_ ledger: any LedgerEngine, dataset: String, payload: [UInt8]) -> Bool {
        for kind in ["key.release", "key.release.simulated"] where
            ledger.events(matching: EventFilter(dataset: dataset, kind: kind)).contains(where: {
                if case .audit(_, _, let p) = $0.operation { return p == payload } else { return false }
            }) { return true }
        return false
    }

    private func withLedger<R>(_ body: (any LedgerEngine) throws(KeyReleaseError) -> R) throws(KeyReleaseError) -> R {
        try ledgerLock.withLock { _ throws(KeyReleaseError) -> R in try body(ledger) }
    }

    /// Records a refusal (`key.refused`) on the ledger, once per registered dataset named (or
    /// with no dataset), and returns the error to answer with. A failure to record is logged
    /// and the refusal still answered: refusing is always safe.
    private func refuse(_ e: KeyReleaseError, session: [UInt8], datasets: [DatasetVersion], signer: Address?) -> KeyReleaseError {
        let payload = KeyReleaseBinding.refusalPayload(session: session, code: e.code, signer: signer)
        ledgerLock.withLock { _ in
            try? ledger.refresh()
            let known = datasets.map(\.id).filter { ledger.dataset($0) != nil }
            for d in (known.isEmpty ? [nil] : known.map { Optional($0) }) {
                do { try ledger.submit(.audit(event: "key.refused", dataset: d, payloadHash: payload), signer: identity) } catch {
                    logger.error("cannot record a key-release refusal on the ledger", metadata: ["error": "\(error)"])
                }
            }
        }
        logger.warning("key release refused", metadata: ["session": "\(Hex.encode(session))", "code": "\(e.code.rawValue)", "reason": "\(e.reason)"])
        return e
    }

    // MARK: renewal

    /// A new lease for the same exchange if every rental is still active (re-checked on the
    /// ledger now). Refusals of a genuine lease are recorded.
    public func renew(_ r: LeaseRenewRequest) throws(KeyReleaseError) -> Lease {
        let now = clock()
        let old = r.lease
        try old.verify(identity: identity.address)
        let session = try Field.hex(old.session, 16, "lease.session")
        let holder = try Field.address(old.holder, "lease.holder")
        do throws(KeyReleaseError) {
            guard now < old.expiresAt else {
                throw KeyReleaseError(.leaseExpired, "the lease expired at \(old.expiresAt) (now \(now)); the keys are gone: mount again")
            }
            guard now < old.notAfter else { throw KeyReleaseError(.credentialExpired, "the job credential expired at \(old.notAfter)") }
            let end = try withLedger { ledger throws(KeyReleaseError) -> UInt64 in
                do { try ledger.refresh() } catch { throw KeyReleaseError(.ledgerUnavailable, "cannot read the ledger: \(error)") }
                var end = UInt64.max
                for d in old.datasets {
                    guard let rental = ledger.activeRental(dataset: d.id, user: holder, at: now) else {
                        throw KeyReleaseError(.noRental, "\(holder) no longer has an active rental of '\(d.id)' (expired or ended at or before \(now))")
                    }
                    end = min(end, rental.userExpires(at: now))
                }
                return end
            }
            var lease = old
            lease.issuedAt = now
            lease.expiresAt = min(end, now + leaseTTL, old.notAfter)
            try lease.sign(identity)
            return lease
        } catch {
            throw refuse(error, session: session, datasets: old.datasets, signer: holder)
        }
    }

    // MARK: access log

    /// Records the job's access-log root (`access.log`, one event per dataset).
    public func recordAccessLog(_ s: AccessLogSubmission) throws(KeyReleaseError) -> AccessLogReceipt {
        try s.lease.verify(identity: identity.address)
        let session = try Field.hex(s.lease.session, 16, "lease.session")
        let root = try Field.hex(s.root, 32, "root")
        let payload = KeyReleaseBinding.accessLogPayload(session: session, root: root, entries: s.entries)
        let indexes = try withLedger { ledger throws(KeyReleaseError) -> [UInt64] in
            var out: [UInt64] = []
            for d in s.lease.datasets {
                do { out.append(try ledger.submit(.audit(event: "access.log", dataset: d.id, payloadHash: payload), signer: identity).index) } catch {
                    throw KeyReleaseError(.ledgerUnavailable, "cannot record the access log on the ledger: \(error)")
                }
            }
            return out
        }
        logger.info("access log recorded", metadata: ["session": "\(s.lease.session)", "root": "\(s.root)", "entries": "\(s.entries)"])
        return AccessLogReceipt(session: s.lease.session, root: s.root, entries: s.entries, ledgerIndexes: indexes)
    }
}

extension KeyReleaseError {
    /// Any error as a KeyReleaseError (internal failure unless it already is one).
    static func from(_ e: any Error) -> KeyReleaseError { (e as? KeyReleaseError) ?? .internalFailure("\(e)") }
}
