// Issue 9 end to end through the real Privacy Plane (`cce4 plane serve` with an attestation
// policy): the provider pushes with `cce4 dataset push`, rents through the API, the consumer
// makes a Job Credential with `cce4 job credential`, and `cce4fs` mounts through the plane with
// simulated evidence — every file read back; renewals; the rental ended → EACCES; the access
// log's root on the ledger at unmount. Then each refusal as a failed mount with the plane's
// reason and a ledger event, and the protocol attacks (replayed session, tampered wrapped key)
// over HTTP against the same plane.
import Attestation
import CurlHTTP
import Envelope
import Foundation
import KeyRelease
import Ledger
import PrivacyPlane
import Testing
import TestSupport
import Wallet
#if canImport(Glibc)
import Glibc
#endif

/// A plane that releases keys, a pushed dataset, an owner and a consumer.
final class ReleaseFixture: @unchecked Sendable {
    let d: Deployment
    let plane: RunningPlane
    let owner: PrivateKey, consumer: PrivateKey
    let ownerToken: String
    let measurement: [UInt8] = (0..<48).map { UInt8($0) ^ 0x5a }
    var files: [String: [UInt8]] = [:]
    var root = ""
    var dir: TempDir { d.dir }

    /// `kek`, `owner`, `consumer`: fixed instead of random (to run one flow on two ledgers).
    /// `ledger`: called before the plane starts with the deployment (its owner keystore is
    /// `owner.json`, password file `pw`) and the plane's identity; it may set
    /// `ledgerLocation` (e.g. contracts it deployed on a chain).
    init(leaseTTL: UInt64 = 3, kek: SecureBytes? = nil, owner: PrivateKey? = nil, consumer: PrivateKey? = nil,
         ledger: ((Deployment, Address) throws -> Void)? = nil) throws {
        d = try Deployment(kek: kek)
        let policy = "{\"measurements\": [\"\(Hex.encode(measurement))\"], \"allowSimulated\": true}"
        try writeFile(d.dir.sub("policy.json"), Array(policy.utf8))
        self.owner = try owner ?? PrivateKey.generate(); self.consumer = try consumer ?? PrivateKey.generate()
        // The provider: a keystore, sign-in + operator approval + create + push with the CLI.
        try writeFile(d.dir.sub("pw"), Array("owner password\n".utf8))
        try writeFile(d.dir.sub("owner.json"), Array(try Keystore.encrypt(self.owner, password: Array("owner password".utf8), kdf: .light)))
        if let ledger { try ledger(d, try PlaneKeys(kek: d.kekBytes, insecure: true).identity.address) }
        plane = try RunningPlane(d, extra: ["--attestation-policy", d.dir.sub("policy.json"), "--lease-ttl", String(leaseTTL)])
        var rng = SeededGenerator(seed: 909)
        for i in 0..<5 { files["visits/part\(i).csv"] = rng.bytes(30_000 + 9_000 * i) }
        files["README.txt"] = Array("longevity cohort, synthetic\n".utf8)
        files["big/biomarkers.bin"] = rng.bytes(3 << 20)
        for (p, b) in files { try writeFile(d.dir.sub("src/" + p), b) }
        let push = try run(Repo.binary("cce4"), ["dataset", "push", d.dir.sub("src"), "--plane", plane.base, "--wallet", d.dir.sub("owner.json"),
                                                 "--password-file", d.dir.sub("pw"), "--dataset", "trial", "--create", "--approve", "--quiet"])
        guard push.status == 0 else { throw TestFailure("push: \(push.stderr)") }
        root = push.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        ownerToken = try plane.signIn(self.owner)
    }

    /// Grants `user` a rental through the plane's API; returns its id.
    @discardableResult
    func rent(_ user: Address, for seconds: UInt64 = 3600) throws -> UInt64 {
        let r = try http("POST", plane.base + "/v1/datasets/trial/rentals",
                         json: ["user": user.checksummed, "expires": UInt64(Date().timeIntervalSince1970) + seconds], token: ownerToken)
        guard r.status == 201, let id = r.json["rentalId"] as? NSNumber else { throw TestFailure("rent: \(r.status) \(r.text)") }
        return id.uint64Value
    }

    /// A Job Credential file made with `cce4 job credential` (or edited by `edit`).
    func credential(_ name: String, signer: PrivateKey? = nil, measurement m: [UInt8]? = nil, validFor: Int = 3600,
                    edit: ((inout [String: Any]) -> Void)? = nil) throws -> String {
        let key = signer ?? consumer
        let ks = d.dir.sub("\(name).keystore")
        try writeFile(ks, Array(try Keystore.encrypt(key, password: Array("consumer password".utf8), kdf: .light)))
        try writeFile(d.dir.sub("cpw"), Array("consumer password\n".utf8))
        let path = d.dir.sub("\(name).credential.json")
        var args = ["job", "credential", "--keystore", ks, "--password-file", d.dir.sub("cpw"), "--job", "job-\(name)", "--dataset", "trial@\(root)",
                    "--measurement", Hex.encode(m ?? measurement), "--image", "sha256:" + String(repeating: "ab", count: 32), "-o", path]
        if validFor > 0 { args += ["--valid-for", String(validFor)] }
        let r = try run(Repo.binary("cce4"), args)
        guard r.status == 0 else { throw TestFailure("job credential: \(r.stderr)") }
        if let edit {
            var o = try JSONSerialization.jsonObject(with: Data(try readFile(path))) as! [String: Any]
            edit(&o)
            try writeFile(path, Array(try JSONSerialization.data(withJSONObject: o)))
        }
        return path
    }

    func mount(_ credential: String, _ name: String = "mnt", extra: [String] = []) throws -> (ProcessResult, String) {
        let mp = d.dir.sub(name)
        try FileManager.default.createDirectory(atPath: mp, withIntermediateDirectories: true)
        let o = ["dataset=trial", "root=\(root)", "plane=\(plane.base)", "credential=\(credential)", "attest=simulated",
                 "plane_identity=\(plane.operatorAddress.checksummed)"] + extra
        return (try run(Repo.binary("cce4fs"), [d.store, mp, "-o", o.joined(separator: ",")]), mp)
    }

    func events(_ kind: String) throws -> [Event] {
        try Ledgers.open(d.ledger).events(matching: EventFilter(dataset: "trial", kind: kind))
    }
}

/// Unmounts on scope exit, even when a test fails.
final class MountGuard {
    let path: String
    var done = false
    init(_ p: String) { path = p }
    func unmount() {
        guard !done else { return }
        done = true
        if (try? run("/bin/umount", [path]))?.status != 0 { _ = try? run("/bin/umount", ["-l", path]) }
    }
    deinit { unmount() }
}

@Suite("Key release through the Privacy Plane (real FUSE mounts)", .serialized)
struct KeyReleaseMountTests {
    @Test("push, rent, credential, mount through the plane: every file reads back; the rental ends → EACCES; access-log root on the ledger")
    func endToEnd() throws {
        let fx = try ReleaseFixture(leaseTTL: 3)
        let rental = try fx.rent(fx.consumer.address)
        let (r, mp) = try fx.mount(try fx.credential("ok"))
        #expect(r.status == 0, "\(r.stderr)")
        guard r.status == 0 else { return }
        let m = MountGuard(mp)
        defer { m.unmount() }
        // The release is on the ledger, labelled simulated, recorded by the plane's identity.
        let releases = try fx.events("key.release.simulated")
        #expect(releases.count == 1)
        #expect(releases.first?.actor == fx.plane.operatorAddress)
        for (p, b) in fx.files.sorted(by: { $0.key < $1.key }) { #expect(try readFile(mp + "/" + p) == b, "\(p)") }
        // Renewals (lease 3 s) keep it readable.
        Thread.sleep(forTimeInterval: 4.5)
        #expect(try readFile(mp + "/README.txt") == fx.files["README.txt"])
        // The owner ends the rental through the plane: within a lease, opens fail with EACCES.
        let end = try http("DELETE", fx.plane.base + "/v1/datasets/trial/rentals/\(rental)", token: fx.ownerToken)
        #expect(end.status == 204, "\(end.text)")
        let start = Date()
        var seen: Int32 = 0
        while Date().timeIntervalSince(start) < 10 {
            let fd = open(mp + "/visits/part1.csv", O_RDONLY)
            if fd < 0 { seen = errno; break }
            close(fd)
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(seen == EACCES)
        #expect(Date().timeIntervalSince(start) < 6)
        #expect(try fx.events("key.refused").count == 1, "the refused renewal is on the ledger")
        m.unmount()
        var logged: [Event] = []
        for _ in 0..<50 where logged.isEmpty { logged = try fx.events("access.log"); Thread.sleep(forTimeInterval: 0.1) }
        #expect(logged.count == 1, "the access log's root reached the ledger at unmount")
        // The whole trail verifies offline.
        let v = try run(Repo.binary("cce4"), ["ledger", "verify", "--ledger", fx.d.ledger])
        #expect(v.status == 0, "\(v.stderr)")
    }

    @Test("each refusal is a failed mount (exit 77) with the plane's reason and a key.refused event")
    func refusals() throws {
        let fx = try ReleaseFixture()
        let stranger = try PrivateKey.generate()
        // The consumer rents for 2 s only: expired by the time of the second mount.
        var cases: [(name: String, credential: String, reason: String)] = []
        cases.append(("no rental", try fx.credential("norent", signer: stranger), "no active rental"))
        cases.append(("another signer", try fx.credential("forged") { $0["signer"] = fx.owner.address.checksummed }, "but was signed by"))
        cases.append(("measurement not allow-listed", try fx.credential("badm", measurement: [UInt8](repeating: 7, count: 48)), "not on the plane's allow-list"))
        try fx.rent(fx.consumer.address, for: 2)
        cases.append(("credential expired", try fx.credential("expired", validFor: 1), "the credential expired at"))
        Thread.sleep(forTimeInterval: 2.5)
        cases.append(("rental expired", try fx.credential("late"), "no active rental"))
        var refused = 0
        for c in cases {
            let (r, mp) = try fx.mount(c.credential, "mnt-\(c.name.replacingOccurrences(of: " ", with: "-"))")
            if r.status == 0 { MountGuard(mp).unmount() }
            #expect(r.status == 77, "\(c.name): exit \(r.status) \(r.stderr)")
            #expect(r.stderr.contains(c.reason), "\(c.name): \(r.stderr)")
            if r.status == 77 { refused += 1 }
        }
        let events = try fx.events("key.refused")
        // Every refusal is on the ledger, each with its reason.
        #expect(events.count == cases.count && refused == cases.count, "\(events.count) key.refused events for \(refused) of \(cases.count) refusals")
        #expect(try fx.events("key.release").isEmpty && (try fx.events("key.release.simulated")).isEmpty)
    }

    @Test("over HTTP to the real plane: a replayed session is refused; a tampered wrapped key is caught by the client")
    func protocolAttacks() throws {
        let fx = try ReleaseFixture()
        try fx.rent(fx.consumer.address)
        let credential = try JSONDecoder().decode(JobCredential.self, from: Data(try readFile(try fx.credential("attack"))))
        let curl = CurlClient()
        let base = fx.plane.base
        final class Recorder: @unchecked Sendable { var release: [UInt8] = []; var tamper = false }
        let rec = Recorder()
        let transport: KeyReleaseClient.Transport = { path, body in
            if path == KeyReleaseAuthority.Route.release { rec.release = body }
            let r = try body.withUnsafeBytes { b in
                try curl.perform(HTTPRequest(method: "POST", url: base + path, headers: [("Content-Type", "application/json")], body: .bytes(b)))
            }
            var out = r.body
            if rec.tamper, path == KeyReleaseAuthority.Route.release, r.status == 200,
               var o = try? JSONSerialization.jsonObject(with: Data(out)) as? [String: Any], var keys = o["keys"] as? [[String: Any]],
               let w = keys.first?["wrapped"] as? String {
                var chars = Array(w)
                let i = chars.count / 2
                chars[i] = chars[i] == "A" ? "B" : "A"
                keys[0]["wrapped"] = String(chars)
                o["keys"] = keys
                out = Array(try JSONSerialization.data(withJSONObject: o))
            }
            return (r.status, out)
        }
        let client = KeyReleaseClient(transport: transport, planeIdentity: fx.plane.operatorAddress)
        let provider = try SimulatedProvider(key: try SimulatedKey(), measurement: fx.measurement)
        let released = try client.release(credential: credential, provider: provider)
        #expect(released.keys["trial"]?.count == 32)
        // The same release request again: the session is single use (recorded on the ledger).
        let replay = try rec.release.withUnsafeBytes { b in
            try curl.perform(HTTPRequest(method: "POST", url: base + KeyReleaseAuthority.Route.release, headers: [("Content-Type", "application/json")], body: .bytes(b)))
        }
        #expect(replay.status >= 400 && replay.status < 500, "replay answered \(replay.status)")
        #expect(replay.headers["content-type"] == "application/problem+json")
        #expect(String(decoding: replay.body, as: UTF8.self).contains("single use") || String(decoding: replay.body, as: UTF8.self).contains("already"),
                "\(String(decoding: replay.body, as: UTF8.self))")
        // A wrapped key altered in transit does not open (AES-GCM), and the client says so.
        rec.tamper = true
        #expect(throws: KeyReleaseError.self) { _ = try client.release(credential: credential, provider: provider) }
        #expect(try fx.events("key.release.simulated").count == 2)
    }

    @Test("a lease signed by another identity than plane_identity= pins: the mount fails, exit 65")
    func wrongIdentity() throws {
        let fx = try ReleaseFixture()
        try fx.rent(fx.consumer.address)
        let other = try PrivateKey.generate()
        let (r, mp) = try fx.mount(try fx.credential("pin"), extra: ["plane_identity=\(other.address.checksummed)"])
        if r.status == 0 { MountGuard(mp).unmount() }
        #expect(r.status == 65, "\(r.stderr)")
        #expect(r.stderr.contains("not signed by the pinned identity"), "\(r.stderr)")
    }

    @Test("a plane without an attestation policy releases nothing: 503 with what to do")
    func notConfigured() throws {
        let d = try Deployment()
        let plane = try RunningPlane(d)
        let r = try http("POST", plane.base + "/v1/key-release/challenge", json: ["datasets": [], "credentialHash": ""])
        #expect(r.status == 503)
        #expect(r.text.contains("--attestation-policy"))
    }
}
