// Attested key release driven in-process: the real authority, the real client over its JSON
// routes, the real simulated provider, real TDX/SNP evidence, a real embedded ledger.
import Attestation
import Envelope
import Foundation
import KeyRelease
import Synchronization
import Ledger
import Testing
import TestSupport
import Wallet

struct Keys: DatasetKeyProvider {
    let keys: [String: SecureBytes]
    func key(dataset: String, root: SHA256Digest) throws -> SecureBytes {
        guard let k = keys[dataset] else { throw KeyReleaseError(.keyUnavailable, "no key") }
        return k
    }
}

struct FixedProvider: EvidenceProvider {
    let evidence: Evidence
    func evidence(reportData: [UInt8]) throws(AttestationError) -> Evidence { evidence }
}

/// Records what went over the wire, and can rewrite it.
final class Wire: @unchecked Sendable {
    var requests: [(String, [UInt8])] = []
    var responses: [(String, Int, [UInt8])] = []
    var rewriteRequest: ((String, [UInt8]) -> [UInt8])?
    var rewriteResponse: ((String, [UInt8]) -> [UInt8])?
    func json(_ path: String) -> [String: Any]? {
        responses.last(where: { $0.0 == path }).flatMap { try? JSONSerialization.jsonObject(with: Data($0.2)) as? [String: Any] }
    }
}

let measurement = [UInt8](repeating: 0xAB, count: 48)

/// A ledger with one dataset version rented by `consumer`, an authority and a client.
final class Setup: @unchecked Sendable {
    let dir = TempDir("cce4-keyrel")
    let ledger: EmbeddedLedger
    let owner = try! PrivateKey.generate(), consumer = try! PrivateKey.generate(), other = try! PrivateKey.generate()
    let plane = try! PrivateKey.generate()
    let root = SHA256Digest.hash(Array("version one".utf8))
    let dek = try! SecureBytes.random(count: 32)
    let simKey = try! SimulatedKey()
    var now = UInt64(Date().timeIntervalSince1970)
    let wire = Wire()
    var rentalID: UInt64 = 0
    var authority: KeyReleaseAuthority!

    init(rent: Bool = true, rentalSeconds: UInt64 = 3600, allowSimulated: Bool = true, ttl: UInt64 = 300, policy: Policy? = nil,
         clock: UInt64? = nil, collateral: (@Sendable ([UInt8]) throws -> CollateralSource)? = nil) throws {
        ledger = try EmbeddedLedger.create(path: dir.sub("ledger"))
        try ledger.submit(.registerDataset(dataset: "cohort", policyHash: [UInt8](repeating: 1, count: 32), owner: owner.address), signer: owner)
        try ledger.submit(.registerVersion(dataset: "cohort", root: root.bytes), signer: owner)
        if rent {
            let e = try ledger.submit(.setRental(dataset: "cohort", rentalID: 0, user: consumer.address, expires: now + rentalSeconds), signer: owner)
            if case .setRental(_, let id, _, _) = e.operation { rentalID = id }
        }
        if let clock { now = clock }
        var p = policy ?? Policy()
        if policy == nil { p.allowedMeasurements = [measurement] }
        let mac = try SecureBytes.random(count: 32)
        authority = KeyReleaseAuthority(ledger: ledger, policy: p, allowSimulated: allowSimulated, identity: plane, macKey: mac,
                                        keys: Keys(keys: ["cohort": dek]), leaseTTL: ttl, clock: { [unowned self] in self.now },
                                        collateral: collateral ?? { try AttestationVerifier.collateral(for: $0, directory: nil) })
    }

    var dataset: DatasetVersion { try! DatasetVersion(id: "cohort", root: root) }

    func credential(key: PrivateKey? = nil, expires: UInt64? = nil, measurement m: [UInt8] = measurement) throws -> JobCredential {
        try JobCredential.make(job: "job-1", datasets: [dataset], measurement: m, image: "sha256:" + String(repeating: "0", count: 64),
                               expires: expires ?? now + 3600, key: key ?? consumer)
    }

    var client: KeyReleaseClient {
        KeyReleaseClient(transport: { [self] path, body in
            let b = wire.rewriteRequest?(path, body) ?? body
            wire.requests.append((path, b))
            let r = authority.handle(path: path, body: b)
            let rb = wire.rewriteResponse?(path, r.body) ?? r.body
            wire.responses.append((path, r.status, rb))
            return (r.status, rb)
        }, planeIdentity: plane.address, clock: { [unowned self] in self.now })
    }

    func provider(_ m: [UInt8] = measurement) throws -> SimulatedProvider { try SimulatedProvider(key: simKey, measurement: m) }

    func events(_ kind: String) -> [Event] { ledger.events(matching: EventFilter(kind: kind)) }

    var lastSession: [UInt8] { Hex.decode(wire.json(KeyReleaseAuthority.Route.challenge)?["session"] as? String ?? "") ?? [] }

    /// Runs a release that must fail with `code`; checks one `key.refused` event records it.
    func refused(_ code: KeyReleaseError.Code, signer: Address?, credential: JobCredential? = nil, provider p: (any EvidenceProvider)? = nil,
                 sourceLocation: SourceLocation = #_sourceLocation) throws {
        let before = events("key.refused").count
        let c = try credential ?? self.credential()
        do {
            _ = try client.release(credential: c, provider: try p ?? provider())
            Issue.record("the release succeeded; expected \(code)", sourceLocation: sourceLocation)
        } catch let error as KeyReleaseError {
            #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
            #expect(!error.reason.isEmpty, sourceLocation: sourceLocation)
        }
        let refused = events("key.refused")
        #expect(refused.count == before + 1, sourceLocation: sourceLocation)
        if let e = refused.last, case .audit(_, let d, let payload) = e.operation {
            #expect(d == "cohort", sourceLocation: sourceLocation)
            #expect(e.actor == plane.address, sourceLocation: sourceLocation)
            #expect(payload == KeyReleaseBinding.refusalPayload(session: lastSession, code: code, signer: signer), sourceLocation: sourceLocation)
        }
        #expect(events("key.release").isEmpty && events("key.release.simulated").isEmpty, sourceLocation: sourceLocation)
    }
}

@Suite("Key release")
struct KeyReleaseTests {
    @Test("a release returns the dataset key and a lease signed by the pinned identity, recorded before the answer")
    func release() throws {
        let s = try Setup(ttl: 120)
        let out = try s.client.release(credential: try s.credential(), provider: try s.provider())
        #expect(out.keys["cohort"]!.constantTimeEquals(s.dek))
        try out.lease.verify(identity: s.plane.address)
        #expect(out.lease.holder == s.consumer.address.checksummed)
        #expect(out.lease.expiresAt == s.now + 120)
        let rel = s.events("key.release.simulated")
        #expect(rel.count == 1)
        if case .audit(_, let d, let payload)? = rel.first?.operation {
            #expect(d == "cohort")
            #expect(payload == KeyReleaseBinding.releasePayload(session: s.lastSession, datasets: [s.dataset], signer: s.consumer.address))
        }
        #expect(s.events("key.refused").isEmpty)
    }

    @Test("the lease ends with the rental when the rental ends first")
    func leaseCappedByRental() throws {
        let s = try Setup(rentalSeconds: 60, ttl: 3600)
        let out = try s.client.release(credential: try s.credential(), provider: try s.provider())
        #expect(out.lease.expiresAt <= s.now + 60)
        #expect(out.lease.expiresAt >= s.now + 50)
    }

    @Test("no rental: refused and recorded")
    func noRental() throws {
        let s = try Setup(rent: false)
        try s.refused(.noRental, signer: s.consumer.address)
    }

    @Test("an expired rental: refused and recorded")
    func rentalExpired() throws {
        let s = try Setup(rentalSeconds: 30)
        s.now += 100
        try s.refused(.noRental, signer: s.consumer.address)
    }

    @Test("a credential signed by another address than it names: refused and recorded")
    func otherSigner() throws {
        let s = try Setup()
        var c = try s.credential()
        c.signature = try s.other.signPersonal(Array(try c.message().utf8)).hex
        try s.refused(.credentialSignature, signer: nil, credential: c)
    }

    @Test("a credential of another consumer, who has no rental: refused")
    func otherConsumer() throws {
        let s = try Setup()
        try s.refused(.noRental, signer: s.other.address, credential: try s.credential(key: s.other))
    }

    @Test("an expired credential: refused and recorded")
    func credentialExpired() throws {
        let s = try Setup()
        try s.refused(.credentialExpired, signer: nil, credential: try s.credential(expires: s.now - 1))
    }

    @Test("a measurement not on the allow-list: refused and recorded")
    func measurementNotAllowed() throws {
        let s = try Setup()
        let m = [UInt8](repeating: 0xCD, count: 48)
        try s.refused(.measurementNotAllowed, signer: nil, credential: try s.credential(measurement: m), provider: try s.provider(m))
    }

    @Test("a credential naming another measurement than the evidence's: refused")
    func measurementMismatch() throws {
        var p = Policy(); p.allowedMeasurements = [measurement, [UInt8](repeating: 0xCD, count: 48)]
        let s2 = try Setup(policy: p)
        try s2.refused(.credentialMismatch, signer: s2.consumer.address, credential: try s2.credential(measurement: [UInt8](repeating: 0xCD, count: 48)))
    }

    @Test("simulated evidence where the policy does not allow it: refused and recorded")
    func simulatedNotAllowed() throws {
        let s = try Setup(allowSimulated: false)
        try s.refused(.simulatedNotAllowed, signer: nil)
    }

    @Test("real debug SEV-SNP evidence (valid signature, debug policy bit): refused and recorded")
    func debugEvidence() throws {
        let dir = Repo.shared + "/testdata/attestation/"
        let report = try readFile(dir + "snp/go-sev-guest_attestation_debug.bin")
        let collateral = SNPCollateral(endorsementKey: try readFile(dir + "snp/go-sev-guest_vcek.testcer"), certChain: try readFile(dir + "snp/ask_ark_milan.pem"))
        let time = Date(timeIntervalSince1970: 1_704_067_200)
        let claims = try AttestationVerifier.verify(report, collateral: .snp(collateral), policy: .inspection, at: time).claims
        #expect(claims.debug)
        var p = Policy(); p.allowedMeasurements = [claims.measurement]; p.allowAnySNPTCB = true; p.requireRevocationCheck = false
        let s = try Setup(policy: p, clock: UInt64(time.timeIntervalSince1970), collateral: { _ in .snp(collateral) })
        let fixed = FixedProvider(evidence: Evidence(provider: "sev_guest", outblob: report, auxblob: []))
        try s.refused(.debugRefused, signer: nil, credential: try s.credential(measurement: claims.measurement), provider: fixed)
    }

    @Test("real TDX evidence whose report data binds something else: refused as a binding mismatch")
    func realTDXBindsOther() throws {
        let dir = Repo.shared + "/testdata/attestation/"
        let quote = try readFile(dir + "tdx/tdx_prod_quote_SPR_E4.dat")
        let tdx = TDXCollateral(tcbInfo: try readFile(dir + "tdx/sample_tcbInfo_response"), qeIdentity: try readFile(dir + "tdx/sample_qeIdentity_response"),
                                pckCRL: try readFile(dir + "tdx/pckcrl"), rootCRL: try readFile(dir + "tdx/rootcrl.der"))
        let time = Date(timeIntervalSince1970: 1_687_219_200)
        var inspect = Policy.inspection; inspect.acceptedTCBStatuses = Set(TCBStatus.allCases)
        let claims = try AttestationVerifier.verify(quote, collateral: .tdx(tdx), policy: inspect, at: time).claims
        var p = Policy(); p.allowedMeasurements = [claims.measurement]; p.acceptedTCBStatuses = Set(TCBStatus.allCases)
        let s = try Setup(policy: p, clock: UInt64(time.timeIntervalSince1970), collateral: { _ in .tdx(tdx) })
        let fixed = FixedProvider(evidence: Evidence(provider: "tdx_guest", outblob: quote, auxblob: []))
        try s.refused(.bindingMismatch, signer: nil, credential: try s.credential(measurement: claims.measurement), provider: fixed)
    }

    @Test("evidence whose report data binds another ephemeral key: refused and recorded")
    func bindsAnotherKey() throws {
        let s = try Setup()
        let intruder = try X25519KeyPair()
        s.wire.rewriteRequest = { path, body in
            guard path == KeyReleaseAuthority.Route.release, var r = try? JSONDecoder().decode(ReleaseRequest.self, from: Data(body)) else { return body }
            r.publicKey = Hex.encode(intruder.publicKey)
            return Array(try! JSONEncoder().encode(r))
        }
        try s.refused(.bindingMismatch, signer: nil)
    }

    @Test("a replayed session (the same release request again): refused by the ledger and recorded")
    func replay() throws {
        let s = try Setup()
        _ = try s.client.release(credential: try s.credential(), provider: try s.provider())
        let body = s.wire.requests.last(where: { $0.0 == KeyReleaseAuthority.Route.release })!.1
        let again = s.authority.handle(path: KeyReleaseAuthority.Route.release, body: body)
        #expect(again.status == 409)
        let problem = try JSONDecoder().decode(Problem.self, from: Data(again.body))
        #expect(problem.code == "replayed")
        #expect(s.events("key.release.simulated").count == 1)
        #expect(s.events("key.refused").count == 1)
        // The ledger itself refuses a second record of the same release, whoever submits it.
        let e = s.events("key.release.simulated")[0]
        #expect(throws: LedgerError.self) { try s.ledger.submit(e.operation, signer: s.other) }
    }

    @Test("a tampered wrapped key: the client detects it and returns no key")
    func tamperedKey() throws {
        let s = try Setup()
        s.wire.rewriteResponse = { path, body in
            guard path == KeyReleaseAuthority.Route.release, var r = try? JSONDecoder().decode(ReleaseResponse.self, from: Data(body)) else { return body }
            var w = Array(r.keys[0].wrapped.utf8)
            w[10] = w[10] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
            r.keys[0].wrapped = String(decoding: w, as: UTF8.self)
            return Array(try! JSONEncoder().encode(r))
        }
        #expect { try s.client.release(credential: try s.credential(), provider: try s.provider()) } throws: { ($0 as? KeyReleaseError)?.code == .tamperedKey }
        #expect(s.events("key.release.simulated").count == 1)  // the plane released; the mount fails
    }

    @Test("a lease signed by another identity than the pinned one is refused by the client")
    func wrongPlane() throws {
        let s = try Setup()
        let c = KeyReleaseClient(transport: s.client.transport, planeIdentity: s.other.address, clock: { s.now })
        #expect { try c.release(credential: try s.credential(), provider: try s.provider()) } throws: { ($0 as? KeyReleaseError)?.code == .planeIdentity }
    }

    @Test("a forged or expired challenge: 401, not recorded")
    func challengeChecks() throws {
        let s = try Setup()
        let c = try s.credential()
        let ch = try s.authority.challenge(ChallengeRequest(datasets: [s.dataset], credentialHash: try c.hash()))
        var forged = ch; forged.expiresAt += 1000
        let req = ReleaseRequest(challenge: forged, evidence: EvidenceMessage(provider: "simulated", outblob: "", auxblob: ""), publicKey: String(repeating: "0", count: 64), credential: c)
        #expect { try s.authority.release(req) } throws: { ($0 as? KeyReleaseError)?.code == .challengeInvalid }
        var late = req; late.challenge = ch
        s.now += 61
        #expect { try s.authority.release(late) } throws: { ($0 as? KeyReleaseError)?.code == .challengeExpired }
        #expect(s.events("key.refused").isEmpty)
    }

    @Test("renewal re-checks the rental: renewed while active, refused and recorded once it ends")
    func renewal() throws {
        let s = try Setup(ttl: 60)
        let out = try s.client.release(credential: try s.credential(), provider: try s.provider())
        s.now += 30
        let renewed = try s.client.renew(out.lease)
        #expect(renewed.expiresAt == s.now + 60)
        #expect(renewed.exchange == out.lease.exchange)
        try s.ledger.submit(.endRental(dataset: "cohort", rentalID: s.rentalID), signer: s.owner)
        s.now += 1
        #expect { try s.client.renew(renewed) } throws: { ($0 as? KeyReleaseError)?.code == .noRental }
        #expect(s.events("key.refused").count == 1)
        // A lease the plane did not sign is not renewed.
        var forged = renewed; forged.expiresAt += 1
        #expect { try s.client.renew(forged) } throws: { ($0 as? KeyReleaseError)?.code == .leaseInvalid }
    }

    @Test("the access-log root is recorded on the ledger")
    func accessLog() throws {
        let s = try Setup()
        let out = try s.client.release(credential: try s.credential(), provider: try s.provider())
        let root = AccessLogTree.root(leaves: [[1, 2, 3], [4, 5]])
        let receipt = try s.client.submitAccessLog(lease: out.lease, root: root, entries: 2)
        #expect(receipt.ledgerIndexes.count == 1)
        let e = s.events("access.log")
        #expect(e.count == 1)
        if case .audit(_, _, let payload)? = e.first?.operation {
            #expect(payload == KeyReleaseBinding.accessLogPayload(session: Hex.decode(out.lease.session)!, root: root, entries: 2))
        }
    }

    @Test("seeded mutations of a release body never crash, never release twice")
    func fuzz() throws {
        let s = try Setup()
        let c = try s.credential()
        let ch = try s.authority.challenge(ChallengeRequest(datasets: [s.dataset], credentialHash: try c.hash()))
        let eph = try X25519KeyPair()
        let rd = KeyReleaseBinding.reportData(session: Hex.decode(ch.session)!, nonce: Hex.decode(ch.nonce)!, datasets: [s.dataset],
                                              publicKey: eph.publicKey, credentialHash: try c.hash())
        let ev = try s.provider().evidence(reportData: rd)
        let req = ReleaseRequest(challenge: ch, evidence: EvidenceMessage(provider: ev.provider, outblob: Data(ev.outblob).base64EncodedString(), auxblob: ""),
                                 publicKey: Hex.encode(eph.publicKey), credential: c)
        let body = Array(try JSONEncoder().encode(req))
        var rng = SeededGenerator(seed: 0x6b657972656c)
        var ok = 0
        for _ in 0..<150 {
            var b = body
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                case 1: b.remove(at: Int.random(in: 0..<b.count, using: &rng))
                default: b.insert(UInt8.random(in: 0...255, using: &rng), at: Int.random(in: 0...b.count, using: &rng))
                }
            }
            let r = s.authority.handle(path: KeyReleaseAuthority.Route.release, body: b)
            #expect([200, 400, 401, 403, 404, 409].contains(r.status), "status \(r.status)")
            if r.status == 200 { ok += 1 } else { #expect((try? JSONDecoder().decode(Problem.self, from: Data(r.body))) != nil) }
        }
        #expect(ok <= 1)
        #expect(s.authority.handle(path: "/v1/nope", body: []).status == 404)
        #expect(s.authority.handle(path: KeyReleaseAuthority.Route.challenge, body: Array("{".utf8)).status == 400)
    }
}

@Suite("Key release: the client's parsers under seeded mutation")
struct KeyReleaseClientFuzzTests {
    static func mutate(_ body: [UInt8], _ rng: inout SeededGenerator) -> [UInt8] {
        var b = body
        for _ in 0..<Int.random(in: 1...3, using: &rng) {
            guard !b.isEmpty else { break }
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            case 1: b.remove(at: Int.random(in: 0..<b.count, using: &rng))
            default: b.insert(UInt8.random(in: 0...255, using: &rng), at: Int.random(in: 0...b.count, using: &rng))
            }
        }
        return b
    }

    @Test("mutated release answers from the plane: never a crash, and any key returned is the right one")
    func releaseAnswers() throws {
        let s = try Setup()
        let rng = Mutex(SeededGenerator(seed: 0xc11e47))
        s.wire.rewriteResponse = { path, body in
            guard path == KeyReleaseAuthority.Route.release else { return body }
            return rng.withLock { Self.mutate(body, &$0) }
        }
        let c = try s.credential()
        var accepted = 0
        for _ in 0..<60 {
            do {
                let out = try s.client.release(credential: c, provider: try s.provider())
                #expect(out.keys["cohort"]!.constantTimeEquals(s.dek))  // only harmless mutations (JSON whitespace, …) pass
                accepted += 1
            } catch let e as KeyReleaseError {
                #expect(!e.reason.isEmpty)
            }
        }
        print("mutated release answers accepted (harmless mutations): \(accepted) of 60")
    }

    @Test("mutated Job Credential JSON: never a crash, never verifies with a changed signed field")
    func credentials() throws {
        let key = try PrivateKey(bytes: [UInt8](repeating: 0x22, count: 32))
        let c = try JobCredential.make(job: "job-9", datasets: [try DatasetVersion(id: "cohort", root: SHA256Digest.hash([9]))],
                                       measurement: measurement, image: "sha256:abc", expires: 2_000_000_000, key: key)
        let body = Array(try JSONEncoder().encode(c))
        var rng = SeededGenerator(seed: 0x0c4ed)
        for _ in 0..<500 {
            guard let m = try? JSONDecoder().decode(JobCredential.self, from: Data(Self.mutate(body, &rng))) else { continue }
            if let who = try? m.verify(now: 1_900_000_000) {
                #expect(who == key.address)
                #expect(try m.message() == c.message())
            }
        }
    }
}

@Suite("Key release formats against independent implementations")
struct KeyReleaseInteropTests {
    func tool(_ cmd: String, _ req: [String: Any]) throws -> [String: Any] {
        let r = try run(Repo.python, [Repo.root + "/Tests/interop/keyrelease_tool.py", cmd], input: try JSONSerialization.data(withJSONObject: req))
        guard r.status == 0 else { throw KeyReleaseError(.internalFailure, "keyrelease_tool \(cmd): \(r.stderr)") }
        return try JSONSerialization.jsonObject(with: r.stdout) as! [String: Any]
    }

    @Test("X25519 → HKDF-SHA256(transcript) → AES-256-GCM wrap matches Python cryptography (the doc's test vector)")
    func wrapVector() throws {
        let cvmPriv = (0..<32).map { UInt8($0) }, planePriv = (0..<32).map { UInt8(0x20 + $0) }
        let transcript = SHA256Digest.hash(Array("transcript".utf8)).bytes
        let dekBytes = (0..<32).map { UInt8(0x40 + $0) }
        let root = SHA256Digest.hash(Array("version one".utf8))
        let d = try DatasetVersion(id: "cohort", root: root)
        let cvm = try X25519KeyPair(privateKey: cvmPriv), plane = try X25519KeyPair(privateKey: planePriv)
        let dek = try dekBytes.withUnsafeBytes { try SecureBytes(copying: $0) }
        let wrapped = try KeyReleaseBinding.wrap(dek, shared: try plane.sharedSecret(with: cvm.publicKey), transcript: transcript, dataset: d)
        let py = try tool("wrap", ["cvmPrivate": Hex.encode(cvmPriv), "planePrivate": Hex.encode(planePriv), "transcript": Hex.encode(transcript),
                                   "dataset": "cohort", "root": root.hex, "dek": Hex.encode(dekBytes)])
        #expect(py["cvmPublic"] as? String == Hex.encode(cvm.publicKey))
        #expect(py["planePublic"] as? String == Hex.encode(plane.publicKey))
        #expect(py["wrapped"] as? String == Hex.encode(wrapped))
        // The frozen vector of docs/key-release.md §Test vectors.
        #expect(Hex.encode(cvm.publicKey) == "8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f")
        #expect(try cvm.sharedSecret(with: plane.publicKey).withUnsafeBytes { Hex.encode($0) } == "9663aa1da97e848a914a436d04163dfbb89178f107f1b5b77ed3854203382854")
        #expect(Hex.encode(wrapped) == "06752259595b26db9bfa0b4b7655456c83b8f1bbe4957e0ecd9444701108b429718b3235763e1088988495ed4e9479fa")
        // And the other way round: Python unwraps what Swift wrapped; Swift detects one flipped bit.
        let back = try tool("unwrap", ["cvmPrivate": Hex.encode(cvmPriv), "planePublic": Hex.encode(plane.publicKey), "transcript": Hex.encode(transcript),
                                       "dataset": "cohort", "root": root.hex, "wrapped": Hex.encode(wrapped)])
        #expect(back["dek"] as? String == Hex.encode(dekBytes))
        var bad = wrapped; bad[0] ^= 1
        #expect { try KeyReleaseBinding.unwrap(bad, shared: try cvm.sharedSecret(with: plane.publicKey), transcript: transcript, dataset: d) }
            throws: { ($0 as? KeyReleaseError)?.code == .tamperedKey }
    }

    @Test("report data and transcript layouts match the Python implementation of the doc")
    func layouts() throws {
        let session = (0..<16).map { UInt8($0) }, nonce = (0..<32).map { UInt8(0x10 + $0) }, pub = (0..<32).map { UInt8(0x30 + $0) }
        let ch = SHA256Digest.hash(Array("credential".utf8)).bytes
        let root = SHA256Digest.hash(Array("version one".utf8))
        let ds = [try DatasetVersion(id: "a-cohort", root: root), try DatasetVersion(id: "b.omics", root: root)]
        let rd = KeyReleaseBinding.reportData(session: session, nonce: nonce, datasets: ds, publicKey: pub, credentialHash: ch)
        let py = try tool("report-data", ["session": Hex.encode(session), "nonce": Hex.encode(nonce), "datasets": ds.map { [$0.id, $0.root.hex] },
                                          "publicKey": Hex.encode(pub), "credentialHash": Hex.encode(ch)])
        #expect(py["reportData"] as? String == Hex.encode(rd))
        #expect(Hex.encode(rd) == "6f09c5343e723c3ef63699d57db3af439bc39c8cb9d1c9f384642fb546770e2ef7690fae5f11a011f131c33e916cb1191c603acd2e75f823d38429f882bd2f46")
        let planePub = (0..<32).map { UInt8(0x50 + $0) }
        let addr = try PrivateKey(bytes: [UInt8](repeating: 7, count: 32)).address
        let lease = "cce4long lease v1\nsession: 00"
        let ex = KeyReleaseBinding.exchange(reportData: rd, publicKey: pub, planePublicKey: planePub, plane: addr)
        let t = KeyReleaseBinding.transcript(exchange: ex, leaseMessage: lease)
        let py2 = try tool("transcript", ["reportData": Hex.encode(rd), "cvmPublic": Hex.encode(pub), "planePublic": Hex.encode(planePub),
                                          "plane": Hex.encode(addr.bytes), "lease": lease])
        #expect(py2["exchange"] as? String == Hex.encode(ex))
        #expect(py2["transcript"] as? String == Hex.encode(t))
    }

    @Test("a Job Credential's EIP-191 signature is eth-account's, and eth-account recovers its signer")
    func credentialSignature() throws {
        let key = try PrivateKey(bytes: [UInt8](repeating: 0x11, count: 32))
        let c = try JobCredential.make(job: "job-1", datasets: [try DatasetVersion(id: "cohort", root: SHA256Digest.hash(Array("version one".utf8)))],
                                       measurement: measurement, image: "sha256:abc", expires: 2_000_000_000, key: key)
        // The frozen vector of docs/key-release.md §Test vectors.
        #expect(c.signature == "0x7afeb93642435c6341e80dbe5752b7222257f9ee8f16ab2922769e69ecb640d512a809cdea44b18800368dec8f5f0521a1e3b3f175cd2a963463f1403da320ab1c")
        #expect(Hex.encode(try c.hash()) == "d7c76967f2b18e949ac31b80476c1c4eae1a92aece5546aaec8af23ffcdd7c7a")
        let msg = Hex.encode(Array(try c.message().utf8))
        let signed = try run(Repo.python, [Repo.root + "/Tests/interop/eth_tool.py", "sign"],
                             input: try JSONSerialization.data(withJSONObject: ["items": [["key": Hex.encode([UInt8](repeating: 0x11, count: 32)), "message": msg]]]))
        let out = try JSONSerialization.jsonObject(with: signed.stdout) as! [[String: String]]
        #expect("0x" + (out[0]["signature"] ?? "") == c.signature)
        let rec = try run(Repo.python, [Repo.root + "/Tests/interop/eth_tool.py", "recover"],
                          input: try JSONSerialization.data(withJSONObject: ["items": [["message": msg, "signature": String(c.signature.dropFirst(2))]]]))
        #expect((try JSONSerialization.jsonObject(with: rec.stdout) as! [String]).first == key.address.checksummed)
        #expect(try c.verify(now: 1_900_000_000) == key.address)
    }
}
