// The Privacy Plane on loopback: sign-in, datasets, rentals, audit with proofs, errors,
// OpenAPI agreement, keys, configuration, two replicas, and `cce4 plane serve`.
import Envelope
import Foundation
import Ledger
import ObjectStore
@testable import PrivacyPlane
import Testing
import TestSupport
import Wallet

@Suite(.serialized) struct PlaneTests {
    @Test func healthMetricsProblemsAndSealingLabel() throws {
        let d = try Deployment()
        let p = try RunningPlane(d)
        let h = try http("GET", p.base + "/healthz")
        #expect(h.status == 200 && h.json["status"] as? String == "ok")
        #expect(h.header("Cce4-Sealing") == "dev-insecure")
        let nf = try http("GET", p.base + "/nope")
        #expect(nf.status == 404)
        #expect(nf.header("Content-Type") == "application/problem+json")
        #expect(nf.json["type"] as? String == "https://cce4long.dev/problems/not-found")
        #expect(nf.json["status"] as? Int == 404)
        #expect(nf.header("Cce4-Sealing") == "dev-insecure")
        let m = try http("GET", p.base + "/metrics")
        #expect(m.status == 200)
        #expect(m.text.contains("cce4_plane_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"))
        #expect(m.text.contains("cce4_plane_http_request_duration_seconds_bucket"))
        #expect(m.text.contains("status=\"404\""))
    }

    @Test func openAPIAgreesWithRouter() throws {
        let d = try Deployment()
        let p = try RunningPlane(d)
        let served = try http("GET", p.base + "/openapi.json")
        #expect(served.status == 200)
        let file = try Data(contentsOf: URL(fileURLWithPath: Repo.root + "/docs/openapi.json"))
        #expect(served.body == file, "docs/openapi.json and the served document differ: run scripts/plane-openapi.py")
        let doc = try JSONSerialization.jsonObject(with: file) as! [String: Any]
        #expect(doc["openapi"] as? String == "3.1.0")
        var documented = Set<String>()
        for (path, ops) in doc["paths"] as! [String: [String: Any]] {
            for m in ops.keys { documented.insert(m.uppercased() + " " + path) }
        }
        let routed = Set(try PlaneServer(config: d.config()).routes.map { $0.method + " " + $0.path })
        #expect(routed == documented, "only routed: \(routed.subtracting(documented).sorted()); only documented: \(documented.subtracting(routed).sorted())")
        // Every operation documents its problem responses as problem+json.
        for (_, ops) in doc["paths"] as! [String: [String: Any]] {
            for (_, op) in ops {
                let responses = (op as! [String: Any])["responses"] as! [String: Any]
                for (code, r) in responses where code.hasPrefix("4") || code.hasPrefix("5") {
                    let content = (r as! [String: Any])["content"] as? [String: Any]
                    #expect(content?["application/problem+json"] != nil)
                }
            }
        }
    }

    @Test func signInChecksEveryField() throws {
        let d = try Deployment()
        let p = try RunningPlane(d)
        let alice = try PrivateKey.generate()
        let nonce = try http("GET", p.base + "/v1/auth/nonce").json
        #expect(nonce["domain"] as? String == "127.0.0.1:\(p.port)")
        #expect((nonce["statement"] as? String)?.contains(p.operatorAddress.checksummed) == true)

        // A good sign-in, then its replay.
        let (text, sig) = try p.signedMessage(alice)
        let ok = try http("POST", p.base + "/v1/auth/login", json: ["message": text, "signature": sig])
        #expect(ok.status == 200)
        #expect(ok.json["address"] as? String == alice.address.checksummed)
        let replay = try http("POST", p.base + "/v1/auth/login", json: ["message": text, "signature": sig])
        #expect(replay.status == 401)
        #expect((replay.json["detail"] as? String)?.contains("already used") == true)

        func refused(_ why: String, _ edit: (inout SIWEMessage) -> Void) throws {
            let (t, s) = try p.signedMessage(alice, edit: edit)
            let r = try http("POST", p.base + "/v1/auth/login", json: ["message": t, "signature": s])
            #expect(r.status == 401, "\(why): \(r.status) \(r.text)")
            #expect(r.header("Content-Type") == "application/problem+json")
        }
        let now = Int64(Date().timeIntervalSince1970)
        try refused("expired") { $0.issuedAt = SIWETime(unixSeconds: now - 100); $0.expirationTime = SIWETime(unixSeconds: now - 10) }
        try refused("not yet valid") { $0.notBefore = SIWETime(unixSeconds: now + 600) }
        try refused("issued in the future") { $0.issuedAt = SIWETime(unixSeconds: now + 3600); $0.expirationTime = nil }
        try refused("other domain") { $0.domain = "evil.example:443" }
        try refused("other uri") { $0.uri = "http://evil.example/" }
        try refused("other chain") { $0.chainID = 5 }
        try refused("forged nonce") { $0.nonce = String(repeating: "9", count: 10) + String(repeating: "a", count: 56) }
        // Signed by someone else than the message's address.
        let (t2, _) = try p.signedMessage(alice)
        let mallory = try PrivateKey.generate()
        let forged = try http("POST", p.base + "/v1/auth/login", json: ["message": t2, "signature": try mallory.signPersonal(Array(t2.utf8)).hex])
        #expect(forged.status == 401)
        // Malformed input.
        #expect(try http("POST", p.base + "/v1/auth/login", json: ["message": "hello", "signature": sig]).status == 400)
        #expect(try http("POST", p.base + "/v1/auth/login", body: Data("{not json".utf8), headers: ["Content-Type": "application/json"]).status == 400)
        #expect(try http("POST", p.base + "/v1/auth/login", json: ["message": 1]).status == 422)
        let big = try http("POST", p.base + "/v1/auth/login", body: Data(repeating: 0x20, count: 200_000), headers: ["Content-Type": "application/json"])
        #expect(big.status == 413)
        // Tokens: garbage, tampered, none.
        #expect(try http("POST", p.base + "/v1/datasets", json: ["id": "x1"]).status == 401)
        #expect(try http("POST", p.base + "/v1/datasets", json: ["id": "x1"], token: "cce4pt1.nope").status == 401)
        let tok = ok.json["token"] as! String
        var tampered = Array(tok.utf8); tampered[10] = tampered[10] == 0x61 ? 0x62 : 0x61
        #expect(try http("POST", p.base + "/v1/datasets", json: ["id": "x1"], token: String(decoding: tampered, as: UTF8.self)).status == 401)
        #expect(!tok.isEmpty)
    }

    @Test func datasetsRentalsAndAuditWithProofs() throws {
        let d = try Deployment()
        let p = try RunningPlane(d)
        let alice = try PrivateKey.generate(), bob = try PrivateKey.generate()
        let ta = try p.signIn(alice), tb = try p.signIn(bob)
        // Without an operator approval the plane cannot act for alice on the ledger.
        let na = try http("POST", p.base + "/v1/datasets", json: ["id": "cohort-1"], token: ta)
        #expect(na.status == 403 && na.json["type"] as? String == "https://cce4long.dev/problems/operator-approval-required", "\(na.text)")
        try p.approve(alice, token: ta)
        try p.approve(bob, token: tb)

        let c = try http("POST", p.base + "/v1/datasets", json: ["id": "cohort-1"], token: ta)
        #expect(c.status == 201, "\(c.text)")
        #expect(c.json["owner"] as? String == alice.address.checksummed)
        #expect(try http("POST", p.base + "/v1/datasets", json: ["id": "cohort-1"], token: tb).status == 409)
        #expect(try http("POST", p.base + "/v1/datasets", json: ["id": "Bad/Id"], token: ta).status == 422)
        #expect(try http("POST", p.base + "/v1/datasets", json: ["id": "p1", "policyHash": "zz"], token: ta).status == 422)
        let g = try http("GET", p.base + "/v1/datasets/cohort-1")
        #expect(g.status == 200 && (g.json["versions"] as? [Any])?.isEmpty == true)
        #expect(try http("GET", p.base + "/v1/datasets/nope").status == 404)

        // Rentals: only the owner grants; anyone asks.
        let expires = UInt64(Date().timeIntervalSince1970) + 3600
        let notOwner = try http("POST", p.base + "/v1/datasets/cohort-1/rentals", json: ["user": bob.address.checksummed, "expires": expires], token: tb)
        #expect(notOwner.status == 403)
        let r = try http("POST", p.base + "/v1/datasets/cohort-1/rentals", json: ["user": bob.address.checksummed, "expires": expires], token: ta)
        #expect(r.status == 201, "\(r.text)")
        let rid = (r.json["rentalId"] as! NSNumber).uint64Value
        let st = try http("GET", p.base + "/v1/datasets/cohort-1/rentals/\(bob.address.checksummed)")
        #expect(st.json["active"] as? Bool == true && (st.json["rentalId"] as? NSNumber)?.uint64Value == rid)
        #expect(try http("GET", p.base + "/v1/datasets/cohort-1/rentals/\(alice.address.checksummed)").json["active"] as? Bool == false)
        #expect(try http("GET", p.base + "/v1/datasets/cohort-1/rentals/0x12").status == 422)
        #expect(try http("DELETE", p.base + "/v1/datasets/cohort-1/rentals/\(rid)", token: tb).status == 403)
        #expect(try http("DELETE", p.base + "/v1/datasets/cohort-1/rentals/\(rid)", token: ta).status == 204)
        #expect(try http("DELETE", p.base + "/v1/datasets/cohort-1/rentals/\(rid)", token: ta).status == 409)
        #expect(try http("DELETE", p.base + "/v1/datasets/cohort-1/rentals/99", token: ta).status == 404)
        #expect(try http("GET", p.base + "/v1/datasets/cohort-1/rentals/\(bob.address.checksummed)").json["active"] as? Bool == false)

        // Audit: every event with a proof against a checkpoint the plane signed.
        let a = try http("GET", p.base + "/v1/audit?dataset=cohort-1")
        #expect(a.status == 200)
        let note = a.json["checkpoint"] as! String
        let (cp, signers) = try Checkpoint.open(note, trusted: p.operatorAddress)
        #expect(signers == [p.operatorAddress])
        let events = a.json["events"] as! [[String: Any]]
        let kinds = events.map { $0["event"] as! String }
        #expect(kinds.contains("dataset.register") && !kinds.contains("operator.approve") && kinds.contains("plane.dataset.create") && kinds.contains("rental.set")
                && kinds.contains("plane.rental.grant") && kinds.contains("rental.end") && kinds.contains("plane.rental.end"))
        for e in events {
            let entry = Hex.decode(e["entry"] as! String)!
            #expect(Hex.encode(Merkle.leafHash(entry)) == e["leafHash"] as? String)
            try Merkle.verifyInclusion(leafHash: Merkle.leafHash(entry), index: (e["index"] as! NSNumber).uint64Value, size: cp.size,
                                       path: (e["proof"] as! [String]).map { Hex.decode($0)! }, root: cp.root)
        }
        // And with the CLI, offline, as an auditor would.
        let e0 = events.last!
        try Data(note.utf8).write(to: URL(fileURLWithPath: d.dir.sub("cp.note")))
        let proof: [String: Any] = ["type": "inclusion", "leaf_index": e0["index"]!, "entry": e0["entry"]!, "path": e0["proof"]!]
        try JSONSerialization.data(withJSONObject: proof).write(to: URL(fileURLWithPath: d.dir.sub("proof.json")))
        let out = try run(Repo.binary("cce4"), ["ledger", "check-proof", "--proof", d.dir.sub("proof.json"), "--checkpoint", d.dir.sub("cp.note"),
                                                "--signer", p.operatorAddress.checksummed])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdoutText.hasPrefix("OK: entry"))
        #expect(try http("GET", p.base + "/v1/audit").status == 400)
        #expect(try http("GET", p.base + "/v1/audit?dataset=nope").status == 404)
    }

    @Test func twoReplicasShareStoreAndLedger() throws {
        let d = try Deployment()
        let p1 = try RunningPlane(d), p2 = try RunningPlane(d)
        #expect(p1.operatorAddress == p2.operatorAddress)
        let alice = try PrivateKey.generate()
        let t1 = try p1.signInApproved(alice)
        // A message signed for p1 but replayed at p1 after p1 spent it, and a nonce of p1 used at p2.
        #expect(try http("POST", p2.base + "/v1/datasets", json: ["id": "shared"], token: t1).status == 201)
        #expect(try http("POST", p1.base + "/v1/datasets", json: ["id": "shared"], token: t1).status == 409)
        #expect(try http("GET", p1.base + "/v1/datasets/shared").json["owner"] as? String == alice.address.checksummed)
        let r = try http("POST", p1.base + "/v1/datasets/shared/rentals", json: ["user": alice.address.checksummed, "expires": UInt64(Date().timeIntervalSince1970) + 600], token: t1)
        #expect(r.status == 201)
        #expect(try http("GET", p2.base + "/v1/datasets/shared/rentals/\(alice.address.checksummed)").json["active"] as? Bool == true)
        // A version uploaded through one replica is listed, and its DEK is the same, at the other.
        try pythonTar([("a.csv", "id,age\n1,52\n")], to: d.dir.sub("v.tar"))
        let up = try http("PUT", p2.base + "/v1/datasets/shared/versions", body: try Data(contentsOf: URL(fileURLWithPath: d.dir.sub("v.tar"))), token: t1)
        #expect(up.status == 201, "\(up.text)")
        let root = up.json["root"] as? String ?? ""
        #expect((try http("GET", p1.base + "/v1/datasets/shared").json["versions"] as? [[String: Any]])?.first?["root"] as? String == root)
        // The store is untrusted: an altered version record is refused, not believed.
        let metaPath = d.dir.sub("store/shared/plane/versions/\(root)")
        let original = try readFile(metaPath)
        let altered = String(decoding: original, as: UTF8.self).replacingOccurrences(of: "\"files\":1", with: "\"files\":9")
        #expect(altered != String(decoding: original, as: UTF8.self))
        try writeFile(metaPath, Array(altered.utf8))
        #expect(try http("GET", p1.base + "/v1/datasets/shared/versions").status == 503)
        try writeFile(metaPath, original)
        #expect(try http("GET", p1.base + "/v1/datasets/shared/versions").status == 200)
        // A nonce spent at one replica cannot be replayed at the other.
        let p3 = try RunningPlane(d, publicAuthority: "127.0.0.1:\(p1.port)")
        let (text, sig) = try p1.signedMessage(alice)
        #expect(try http("POST", p1.base + "/v1/auth/login", json: ["message": text, "signature": sig]).status == 200)
        #expect(try http("POST", p3.base + "/v1/auth/login", json: ["message": text, "signature": sig]).status == 401)
    }

    @Test func keysAreDerivedWrappedAndBound() throws {
        let d = try Deployment()
        let k1 = try PlaneKeys(kek: d.kekBytes, insecure: true)
        let k2 = try PlaneKeys(kek: try SecureBytes(copying: d.kekBytes.withUnsafeBytes { UnsafeRawBufferPointer($0) }), insecure: true)
        #expect(k1.identity.address == k2.identity.address)
        let other = try PlaneKeys(kek: try SecureBytes.random(count: 32), insecure: true)
        #expect(other.identity.address != k1.identity.address)
        let dek = try SecureBytes.random(count: 32)
        let w = try k1.wrap(dek: dek, dataset: "ds", keyNumber: 1)
        #expect(w.count == 8 + 1 + 4 + 40 + 32 + 16)
        #expect(try k2.unwrap(w, dataset: "ds", keyNumber: 1).constantTimeEquals(dek))
        #expect(throws: (any Error).self) { try k1.unwrap(w, dataset: "other", keyNumber: 1) }
        #expect(throws: (any Error).self) { try other.unwrap(w, dataset: "ds", keyNumber: 1) }
        var flipped = w; flipped[60] ^= 1
        #expect(throws: (any Error).self) { try k1.unwrap(flipped, dataset: "ds", keyNumber: 1) }
        // Through the service: a new dataset has key 1 in the store; rotation adds key 2.
        let p = try RunningPlane(d)
        let t = try p.signInApproved(try PrivateKey.generate())
        #expect(try http("POST", p.base + "/v1/datasets", json: ["id": "keyed"], token: t).status == 201)
        let store = try ObjectStores.open(url: d.store)
        #expect(try store.listAll(prefix: "keyed/plane/dek/").map(\.key.rawValue) == ["keyed/plane/dek/1"])
        try pythonTar([("x", "one")], to: d.dir.sub("x.tar"))
        let tarBody = try Data(contentsOf: URL(fileURLWithPath: d.dir.sub("x.tar")))
        let v1 = try http("PUT", p.base + "/v1/datasets/keyed/versions", body: tarBody, token: t).json["root"] as! String
        #expect(try http("POST", p.base + "/v1/datasets/keyed/keys", token: try p.signIn(try PrivateKey.generate())).status == 403)
        let rot = try http("POST", p.base + "/v1/datasets/keyed/keys", token: t)
        #expect(rot.status == 201 && rot.json["key"] as? Int == 2, "\(rot.text)")
        let raw = try store.get(try ObjectKey("keyed/plane/dek/2")).bytes
        #expect(throws: (any Error).self) { try k1.unwrap(raw, dataset: "keyed", keyNumber: 1) }
        let dek2 = try k1.unwrap(raw, dataset: "keyed", keyNumber: 2)
        let v2 = try http("PUT", p.base + "/v1/datasets/keyed/versions", body: tarBody, token: t).json["root"] as! String
        // Each version keeps its own key; the public key-release API unwraps the right one.
        let service = try PlaneServer(config: d.config()).service
        #expect(try service.datasetKey(dataset: "keyed", root: v2).constantTimeEquals(dek2))
        #expect(!(try service.datasetKey(dataset: "keyed", root: v1).constantTimeEquals(dek2)))
        // The store cannot roll rotation back: with key 2 deleted, uploads fail closed, never use key 1.
        try store.delete(try ObjectKey("keyed/plane/dek/2"))
        #expect(try http("PUT", p.base + "/v1/datasets/keyed/versions", body: tarBody, token: t).status == 503)
        let kinds = (try http("GET", p.base + "/v1/audit?dataset=keyed").json["events"] as! [[String: Any]]).map { $0["event"] as! String }
        #expect(kinds.filter { $0 == "plane.key.rotate" }.count == 2)
    }

    @Test func configurationIsCheckedAndLayered() throws {
        var c = PlaneConfig()
        c.store = "file:///tmp/x"; c.ledger = "/tmp/l"; c.sealing = .devKeyFile; c.devKEKFile = "/tmp/k"
        #expect(throws: PlaneConfigError.self) { try c.validate() } // dev KEK not allowed
        c.allowInsecureDevKEK = true
        try c.validate()
        try c.apply(environment: ["CCE4_PLANE_PORT": "0", "CCE4_PLANE_HOST": "127.0.0.2", "CCE4_PLANE_TOKEN_TTL": "600"])
        #expect(c.port == 0 && c.host == "127.0.0.2" && c.tokenTTL == 600)
        #expect(throws: PlaneConfigError.self) { try c.apply(environment: ["CCE4_PLANE_PORT": "eighty"]) }
        #expect(throws: PlaneConfigError.self) { try c.apply(environment: ["CCE4_PLANE_SEALING": "magic"]) }
        let dir = TempDir()
        try Data(#"{"port": 0, "store": "file:///s", "ledger": "/l", "chainId": 7, "allowInsecureDevKEK": true, "devKEKFile": "/k"}"#.utf8)
            .write(to: URL(fileURLWithPath: dir.sub("c.json")))
        let f = try PlaneConfig.load(file: dir.sub("c.json"))
        #expect(f.chainID == 7 && f.port == 0 && f.store == "file:///s")
        try Data(#"{"prot": 1}"#.utf8).write(to: URL(fileURLWithPath: dir.sub("bad.json")))
        #expect(throws: PlaneConfigError.self) { try PlaneConfig.load(file: dir.sub("bad.json")) }
        var s = c; s.sealing = .snpDerived
        #expect(throws: PlaneConfigError.self) { try s.validate() }
    }

    @Test func serveSubprocessStopsOnSIGTERMAndRefusesAnUnflaggedDevKEK() throws {
        let d = try Deployment()
        let p = try RunningPlane(d)
        #expect(try http("GET", p.base + "/healthz").status == 200)
        // Refused without the explicit insecure flag.
        let r = try run(Repo.binary("cce4"), ["plane", "serve", "--port", "0", "--store", d.store, "--ledger", d.ledger])
        #expect(r.status != 0 && r.stderr.contains("dev-key-file"))
        let t = try p.signIn(try PrivateKey.generate())
        let (status, logs) = p.stop() // SIGTERM: graceful shutdown
        #expect(status == 0)
        #expect(logs.contains("sealing=dev-insecure"))
        #expect(!logs.contains(t) && !logs.contains("cce4pt1."))
        let helped = try run(Repo.binary("cce4"), ["plane", "serve", "--help"])
        #expect(helped.status == 0 && helped.stdoutText.contains("--insecure-dev-kek"))
    }
}
