// The CVM's side of attested key release: runs the protocol over any transport (cce4fs uses
// CurlHTTP; tests call the authority in-process) and returns the keys in locked memory with a
// lease verified against the pinned plane identity.
import Attestation
import Envelope
import Foundation
import Wallet

/// What a successful release gives the mount.
public struct ReleasedKeys: Sendable {
    /// Dataset id → DEK (32 bytes, locked memory).
    public let keys: [String: SecureBytes]
    public let lease: Lease
}

/// Runs the protocol against a plane whose identity the caller pins.
public struct KeyReleaseClient: Sendable {
    /// Sends `body` (JSON) to `path` on the plane; returns the status and the answer's body.
    /// Transport failures are thrown (they become `.transport`).
    public typealias Transport = @Sendable (_ path: String, _ body: [UInt8]) throws -> (status: Int, body: [UInt8])

    public let transport: Transport
    /// The plane identity's address: leases must be signed by it.
    public let planeIdentity: Address
    public let clock: @Sendable () -> UInt64

    public init(transport: @escaping Transport, planeIdentity: Address, clock: @escaping @Sendable () -> UInt64 = { UInt64(Date().timeIntervalSince1970) }) {
        self.transport = transport
        self.planeIdentity = planeIdentity
        self.clock = clock
    }

    /// Challenge, evidence, release, unwrap: the keys of the credential's datasets (or of
    /// `datasets`, a subset), or the plane's refusal / what the client found wrong.
    public func release(credential: JobCredential, provider: any EvidenceProvider, datasets: [DatasetVersion]? = nil) throws(KeyReleaseError) -> ReleasedKeys {
        let wanted = (datasets ?? credential.datasets).sorted()
        let credentialHash = try credential.hash()
        let challenge: Challenge = try call(KeyReleaseAuthority.Route.challenge, ChallengeRequest(datasets: wanted, credentialHash: credentialHash))
        guard challenge.datasets == wanted, challenge.credentialHash == Hex.encode(credentialHash) else {
            throw KeyReleaseError(.malformed, status: 502, "the plane's challenge is for other datasets or another credential")
        }
        let session = try Field.hex(challenge.session, 16, "challenge.session")
        let nonce = try Field.hex(challenge.nonce, 32, "challenge.nonce")
        let eph = try X25519KeyPair()
        let reportData = KeyReleaseBinding.reportData(session: session, nonce: nonce, datasets: wanted, publicKey: eph.publicKey, credentialHash: credentialHash)
        let evidence: Evidence
        do { evidence = try provider.evidence(reportData: reportData) } catch {
            throw KeyReleaseError(.evidenceInvalid, status: 0, "cannot obtain attestation evidence: \(error)")
        }
        let request = ReleaseRequest(challenge: challenge,
                                     evidence: EvidenceMessage(provider: evidence.provider, outblob: Data(evidence.outblob).base64EncodedString(),
                                                               auxblob: Data(evidence.auxblob).base64EncodedString()),
                                     publicKey: Hex.encode(eph.publicKey), credential: credential)
        let response: ReleaseResponse = try call(KeyReleaseAuthority.Route.release, request)
        // The lease: signed by the pinned identity, for this session, holder, datasets and exchange.
        let lease = response.lease
        do throws(KeyReleaseError) { try lease.verify(identity: planeIdentity) } catch {
            throw KeyReleaseError(.planeIdentity, "the plane's lease is not signed by the pinned identity \(planeIdentity): \(error.reason)")
        }
        let planePublic = try Field.hex(response.planePublicKey, 32, "planePublicKey")
        let exchange = KeyReleaseBinding.exchange(reportData: reportData, publicKey: eph.publicKey, planePublicKey: planePublic, plane: planeIdentity)
        guard lease.session == challenge.session, lease.exchange == Hex.encode(exchange), lease.datasets == wanted,
              (try? Field.address(lease.holder, "")) == (try? Field.address(credential.signer, "")) else {
            throw KeyReleaseError(.planeIdentity, "the lease is for another session, exchange, holder or set of datasets")
        }
        let now = clock()
        guard now < lease.expiresAt else {
            throw KeyReleaseError(.leaseExpired, "the plane's lease expired at \(lease.expiresAt) but this machine's clock reads \(now): check its clock (NTP) against the plane's, then mount again")
        }
        let shared = try eph.sharedSecret(with: planePublic)
        let transcript = KeyReleaseBinding.transcript(exchange: exchange, leaseMessage: try lease.message())
        var keys: [String: SecureBytes] = [:]
        for d in wanted {
            let entries = response.keys.filter { $0.dataset == d.id }
            guard entries.count == 1, entries[0].root == d.root.hex else {
                throw KeyReleaseError(.malformed, status: 502, "the plane's answer has \(entries.count) keys for '\(d.id)' at \(d.root.hex), not one")
            }
            guard entries[0].wrapped.utf8.count == 96 else {
                throw KeyReleaseError(.tamperedKey, "the wrapped key of '\(d.id)' is not 48 bytes: altered in transit")
            }
            let sealed = try Field.hex(entries[0].wrapped, 48, "wrapped")
            keys[d.id] = try KeyReleaseBinding.unwrap(sealed, shared: shared, transcript: transcript, dataset: d)
        }
        return ReleasedKeys(keys: keys, lease: lease)
    }

    /// Renews `lease`; the new one must be signed by the pinned identity for the same exchange.
    public func renew(_ lease: Lease) throws(KeyReleaseError) -> Lease {
        let new: Lease = try call(KeyReleaseAuthority.Route.renew, LeaseRenewRequest(lease: lease))
        do throws(KeyReleaseError) { try new.verify(identity: planeIdentity) } catch {
            throw KeyReleaseError(.planeIdentity, "the renewed lease is not signed by the pinned identity \(planeIdentity): \(error.reason)")
        }
        guard new.session == lease.session, new.exchange == lease.exchange, new.holder == lease.holder, new.datasets == lease.datasets else {
            throw KeyReleaseError(.planeIdentity, "the renewed lease is for another session or exchange")
        }
        return new
    }

    /// Sends the access log's Merkle root (at unmount).
    public func submitAccessLog(lease: Lease, root: [UInt8], entries: UInt64) throws(KeyReleaseError) -> AccessLogReceipt {
        try call(KeyReleaseAuthority.Route.accessLog, AccessLogSubmission(lease: lease, root: root, entries: entries))
    }

    /// POSTs one JSON message; a non-2xx answer becomes the plane's problem as a KeyReleaseError.
    func call<Req: Encodable, Res: Decodable>(_ path: String, _ request: Req) throws(KeyReleaseError) -> Res {
        let body: [UInt8]
        do { body = Array(try JSONEncoder().encode(request)) } catch { throw .internalFailure("cannot encode the request") }
        let answer: (status: Int, body: [UInt8])
        do { answer = try transport(path, body) } catch { throw KeyReleaseError(.transport, status: 0, "cannot reach the plane (\(path)): \(error)") }
        guard (200..<300).contains(answer.status) else {
            if let p = try? JSONDecoder().decode(Problem.self, from: Data(answer.body)), let code = p.code.flatMap(KeyReleaseError.Code.init(rawValue:)) {
                throw KeyReleaseError(code, status: answer.status, "the plane refused: \(p.detail)")
            }
            throw KeyReleaseError(.transport, status: answer.status, "the plane answered HTTP \(answer.status) to \(path) without a problem document")
        }
        do { return try JSONDecoder().decode(Res.self, from: Data(answer.body)) } catch {
            throw KeyReleaseError(.malformed, status: 502, "the plane's answer to \(path) is not a valid \(Res.self)")
        }
    }
}
