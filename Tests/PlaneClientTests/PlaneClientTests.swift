// The plane client's parts that need no plane: the sign-in message (Wallet's parser and
// eth-account), the operator approval (the ledger's digest and eth-account's
// encode_typed_data), problem+json errors, request building, and the TarWriter streamed as
// an HTTP body to a real loopback server. The end-to-end push against a running plane is
// the integration test (docs/plane-client.md §Testing).
import CurlHTTP
import Dataset
import Envelope
import Foundation
import Ledger
import ObjectStore
import PlaneClient
import Testing
import TestSupport
import Wallet

func ethTool(_ cmd: String, _ request: Any) throws -> Any {
    let r = try run(Repo.python, [Repo.root + "/Tests/interop/eth_tool.py", cmd], input: try JSONSerialization.data(withJSONObject: request))
    guard r.status == 0 else { throw TestFailure("eth_tool \(cmd): \(r.stderr)") }
    return try JSONSerialization.jsonObject(with: r.stdout)
}

let testKeyHex = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"

@Suite("Plane client")
struct PlaneClientTests {
    @Test("the sign-in message parses with Wallet's EIP-4361 parser, verifies, and eth-account recovers the signer")
    func signInMessage() throws {
        let key = try PrivateKey(bytes: Hex.decode(testKeyHex)!)
        let n = PlaneClient.SignInNonce(nonce: "k3Jd9sQ0aZ2x", domain: "127.0.0.1:8443", uri: "http://127.0.0.1:8443/v1/auth/login", chainId: 0,
                            statement: "Sign in to the cce4long Privacy Plane operated by 0x5B38Da6a701c568545dCfcB03FcB875f56beddC4.",
                            expiresAt: 1_800_000_300)
        let m = try PlaneClient.signInMessage(nonce: n, address: key.address, now: 1_800_000_000)
        let parsed = try SIWEMessage(parsing: m.text)
        #expect(parsed == m)
        #expect(parsed.domain == n.domain && parsed.nonce == n.nonce && parsed.uri == n.uri && parsed.address == key.address)
        #expect(parsed.issuedAt == SIWETime(unixSeconds: 1_800_000_000))
        #expect(parsed.expirationTime == SIWETime(unixSeconds: 1_800_000_300))
        let sig = try key.signPersonal(Array(m.text.utf8))
        try parsed.verify(signature: sig, at: 1_800_000_100 * 1_000_000_000, domain: "127.0.0.1:8443", nonce: n.nonce)
        let rec = try ethTool("recover", ["items": [["message": Hex.encode(Array(m.text.utf8)), "signature": Hex.encode(sig.bytes)]]]) as! [String]
        #expect(rec == [key.address.checksummed])
        // A nonce that cannot make a valid message (a newline in the statement) is refused before signing.
        let bad = PlaneClient.SignInNonce(nonce: "k3Jd9sQ0aZ2x", domain: "127.0.0.1:8443", uri: "http://x/", chainId: 0, statement: "a\nb", expiresAt: 0)
        #expect(throws: PlaneClientError.self) { try PlaneClient.signInMessage(nonce: bad, address: key.address, now: 1) }
        // A nonce for another domain is refused.
        #expect(throws: PlaneClientError.self) { try PlaneClient.checkSignInDomain(n, expected: "plane.example:443") }
        try PlaneClient.checkSignInDomain(n, expected: try PlaneClient(baseURL: "http://127.0.0.1:8443/").authority)
    }

    @Test("the operator approval: the ledger's typed data parses, the digest matches eth-account's, the signature verifies on the ledger")
    func approval() throws {
        let key = try PrivateKey(bytes: Hex.decode(testKeyHex)!)
        let op = try Address("0x5B38Da6a701c568545dCfcB03FcB875f56beddC4")
        let domain = EIP712Domain.embeddedLedger(logID: Array(repeating: 7, count: 16))
        let json = OperatorApproval.typedDataJSON(owner: key.address, operator: op, expires: 1_900_000_000, nonce: 3, domain: domain)
        let r = try PlaneClient.parseApproval(Array(json.utf8))
        #expect(r.owner == key.address && r.operator == op && r.expires == 1_900_000_000 && r.nonce == 3 && r.domain == domain)
        #expect(r.digest == OperatorApproval.digest(owner: key.address, operator: op, expires: 1_900_000_000, nonce: 3, domain: domain))
        let typed = try JSONSerialization.jsonObject(with: Data(json.utf8))
        let py = try ethTool("sign-typed", ["items": [["key": testKeyHex, "typed": typed]]]) as! [[String: String]]
        #expect(py.first?["digest"] == Hex.encode(r.digest))
        let sig = try key.sign(hash: r.digest)
        try OperatorApproval(owner: key.address, operator: op, expires: r.expires, nonce: r.nonce, signature: sig).verify(domain: domain)
        let body = PlaneClient.approvalBody(r, signature: sig)
        #expect(body["signature"] as? String == sig.hex)
        #expect(body["nonce"] as? UInt64 == 3 && body["expires"] as? UInt64 == 1_900_000_000)
        // chainId and numbers as strings (some wallets' shape) are accepted.
        let stringy = json.replacingOccurrences(of: "\"chainId\":0", with: "\"chainId\":\"0\"").replacingOccurrences(of: "\"nonce\":3", with: "\"nonce\":\"3\"")
        #expect(try PlaneClient.parseApproval(Array(stringy.utf8)) == r)
        // Anything but the ledger's exact types is refused.
        for (from, to) in [("\"primaryType\":\"OperatorApproval\"", "\"primaryType\":\"Mail\""),
                           ("{\"name\":\"expires\",\"type\":\"uint64\"}", "{\"name\":\"expires\",\"type\":\"uint256\"}"),
                           (",{\"name\":\"salt\",\"type\":\"bytes32\"}", ""),
                           ("\"salt\":\"0x", "\"salt\":\"0xzz"),
                           ("\"nonce\":3", "\"nonce\":-3"),
                           ("\"owner\":\"0x", "\"owner\":\"0xq")] {
            let mutated = json.replacingOccurrences(of: from, with: to)
            #expect(mutated != json, "\(from)")
            #expect(throws: PlaneClientError.self, "\(from) → \(to)") { try PlaneClient.parseApproval(Array(mutated.utf8)) }
        }
        #expect(throws: PlaneClientError.self) { try PlaneClient.parseApproval(Array("[1]".utf8)) }
    }

    @Test("the plane's answers decode: numeric rental ids, optional audit fields, versions")
    func answers() throws {
        let d = JSONDecoder()
        let r = try d.decode(PlaneClient.Rental.self, from: Data(#"{"rentalId":7,"user":"0x5B38Da6a701c568545dCfcB03FcB875f56beddC4","expires":1900000000}"#.utf8))
        #expect(r.rentalId.value == "7")
        #expect(try d.decode(PlaneClient.Rental.self, from: Data(#"{"rentalId":"r-7","user":"u","expires":1}"#.utf8)).rentalId.value == "r-7")
        let st = try d.decode(PlaneClient.RentalStatus.self, from: Data(#"{"active":true,"rentalId":3,"expires":5}"#.utf8))
        #expect(st.active && st.rentalId?.value == "3" && st.expires == 5)
        #expect(try d.decode(PlaneClient.RentalStatus.self, from: Data(#"{"active":false}"#.utf8)).rentalId == nil)
        let info = try d.decode(PlaneClient.DatasetInfo.self, from: Data(#"{"id":"c1","owner":"0x5B38Da6a701c568545dCfcB03FcB875f56beddC4","policyHash":"00","versions":[{"root":"ab","files":3,"bytes":10,"createdAt":1800000000}]}"#.utf8))
        #expect(info.versions.first?.files == 3 && info.versions.first?.createdAt == 1_800_000_000)
        let a = try d.decode(PlaneClient.AuditLog.self, from: Data(#"{"checkpoint":"note","events":[{"index":0,"time":1,"actor":"0x5B38Da6a701c568545dCfcB03FcB875f56beddC4","kind":"registerDataset","event":"dataset.register","dataset":"c1","leafHash":"aa","entry":"bb","proof":[]}]}"#.utf8))
        #expect(a.events.first?.payloadHash == nil && a.events.first?.event == "dataset.register")
    }

    @Test("seeded mutation fuzz of the plane's answers: approval requests, problems, nonces never crash the client")
    func fuzzAnswers() throws {
        let key = try PrivateKey(bytes: Hex.decode(testKeyHex)!)
        let domain = EIP712Domain.embeddedLedger(logID: Array(repeating: 1, count: 16))
        let approval = Array(OperatorApproval.typedDataJSON(owner: key.address, operator: key.address, expires: 5, nonce: 1, domain: domain).utf8)
        let problem = Array(#"{"type":"https://cce4long.dev/problems/operator-approval-required","title":"T","status":403,"detail":"D"}"#.utf8)
        let audit = Array(#"{"checkpoint":"n","events":[{"index":0,"time":1,"actor":"a","kind":"k","event":"e","dataset":"d","leafHash":"aa","proof":["bb"]}]}"#.utf8)
        var rng = SeededGenerator(seed: 4361)
        var parsed = 0
        for i in 0..<3000 {
            var a = [approval, problem, audit][i % 3]
            for _ in 0..<(1 + rng.next() % 4) {
                let at = Int(rng.next() % UInt64(a.count))
                switch rng.next() % 3 {
                case 0: a[at] = [0x22, 0x7b, 0x7d, 0x5b, 0x5d, 0x3a, 0x2c, 0x30, 0x39, 0x2d, 0x00, 0xff, UInt8(truncatingIfNeeded: rng.next())][Int(rng.next() % 13)]
                case 1: a.remove(at: at)
                default: a.insert(UInt8(truncatingIfNeeded: rng.next()), at: at)
                }
            }
            do { _ = try PlaneClient.parseApproval(a); parsed += 1 } catch is PlaneClientError {} catch { Issue.record("approval: not a PlaneClientError: \(error)") }
            let e = PlaneClientError.from(response: HTTPResponse(status: 400 + Int(rng.next() % 200), headers: ["content-type": "application/problem+json"], body: a), doing: "x")
            #expect(!e.message.contains("\n") && !e.message.contains("\r"))
            _ = try? JSONDecoder().decode(PlaneClient.AuditLog.self, from: Data(a))
            // Nonce fields of random bytes: a valid message or a PlaneClientError, never a signature over something else.
            let junk = String(decoding: rng.bytes(Int(rng.next() % 12)), as: UTF8.self)
            let n = PlaneClient.SignInNonce(nonce: i % 2 == 0 ? "abcdefgh12" : junk, domain: i % 3 == 0 ? "127.0.0.1:1" : junk, uri: i % 5 == 0 ? "http://h/" : junk,
                                            chainId: rng.next(), statement: i % 7 == 0 ? nil : junk, expiresAt: Int64(rng.next() % 4_000_000_000))
            do {
                let m = try PlaneClient.signInMessage(nonce: n, address: key.address, now: 1_800_000_000)
                #expect(try SIWEMessage(parsing: m.text) == m)
            } catch is PlaneClientError {} catch { Issue.record("nonce: not a PlaneClientError: \(error)") }
        }
        #expect(parsed > 0)  // some mutations (a digit of expires, say) still make a valid request
    }

    @Test("problem+json errors become one line; the approval-required type says what to do")
    func problems() {
        let p = HTTPResponse(status: 403, headers: ["content-type": "application/problem+json"],
                             body: Array(#"{"type":"https://cce4long.dev/problems/operator-approval-required","title":"Operator approval required","status":403,"detail":"approve 0xabc\nfirst"}"#.utf8))
        let e = PlaneClientError.from(response: p, doing: "store a version of d1")
        #expect(e.needsOperatorApproval)
        #expect(!e.message.contains("\n"))
        #expect(e.message.hasPrefix("the plane refused to store a version of d1: Operator approval required: approve 0xabc first (HTTP 403, https://cce4long.dev/problems/operator-approval-required)"))
        #expect(e.message.contains("cce4 plane approve"))
        let plain = PlaneClientError.from(response: HTTPResponse(status: 502, headers: ["content-type": "text/html"], body: Array("<h1>Bad\r\nGateway</h1>".utf8)), doing: "sign in")
        #expect(plain.message == "the plane refused to sign in: HTTP 502: <h1>Bad  Gateway</h1>")
        #expect(!plain.needsOperatorApproval)
        let blank = PlaneClientError.from(response: HTTPResponse(status: 404, headers: ["content-type": "application/problem+json"], body: Array(#"{"type":"about:blank","title":"Not Found"}"#.utf8)), doing: "describe dataset x")
        #expect(blank.message == "the plane refused to describe dataset x: Not Found (HTTP 404)")
    }

    @Test("requests: URLs, bearer token, JSON bodies; unsafe ids and bad URLs refused before any I/O")
    func requests() throws {
        let c = try PlaneClient(baseURL: "http://127.0.0.1:9/", token: "tok-1")
        #expect(c.baseURL == "http://127.0.0.1:9")
        #expect(c.authority == "127.0.0.1:9")
        let (req, body) = try c.request("POST", "/v1/datasets", json: ["id": "cohort-1", "policyHash": "ab"])
        #expect(req.method == "POST" && req.url == "http://127.0.0.1:9/v1/datasets")
        #expect(req.headers.contains { $0 == ("Authorization", "Bearer tok-1") })
        #expect(req.headers.contains { $0 == ("Content-Type", "application/json") })
        #expect(String(decoding: body, as: UTF8.self) == #"{"id":"cohort-1","policyHash":"ab"}"#)
        c.token = nil
        #expect(!(try c.request("GET", "/v1/auth/nonce").0.headers.contains { $0.0 == "Authorization" }))
        for id in ["../x", "A", "", "a/b", "a?b"] {
            #expect(throws: PlaneClientError.self, "\(id)") { try c.dataset(id: id) }
        }
        #expect(throws: PlaneClientError.self) { try c.deleteVersion(id: "d", root: "zz") }
        #expect(throws: PlaneClientError.self) { try c.endRental(id: "d", rentalId: "../1") }
        for bad in ["ftp://x", "127.0.0.1:80", "http://", "http://h/?q=1"] {
            #expect(throws: PlaneClientError.self, "\(bad)") { try PlaneClient(baseURL: bad) }
        }
        #expect(try PlaneClient(baseURL: "https://[::1]:8443").authority == "[::1]:8443")
        // Nothing listens on port 9: a transport failure is one clear line naming the plane.
        do {
            _ = try c.signInNonce()
            Issue.record("no error from a closed port")
        } catch let e as PlaneClientError {
            #expect(e.status == nil)
            #expect(e.message.hasPrefix("cannot issue a sign-in nonce at http://127.0.0.1:9:"))
        }
    }

    @Test("a directory streams as the PUT body (exact Content-Length, progress) and arrives as a valid archive")
    func streamedBody() throws {
        let dir = TempDir("cce4-plane-push")
        let src = dir.sub("src")
        var rng = SeededGenerator(seed: 5)
        try writeFile(src + "/a/one.bin", rng.bytes(300_000))
        try writeFile(src + "/a/b/two.txt", Array("two".utf8))
        try writeFile(src + "/" + String(repeating: "long", count: 40) + ".csv", rng.bytes(70_000))
        try FileManager.default.createSymbolicLink(atPath: src + "/link", withDestinationPath: "a/one.bin")
        let w = try TarWriter(directory: src)
        let total = w.archiveSize
        final class Seen: @unchecked Sendable { var last: Int64 = 0; var calls = 0 }
        let seen = Seen()
        let client = CurlClient()
        let r = try client.perform(HTTPRequest(method: "PUT", url: EchoServer.base + "/echo", headers: [("Content-Type", "application/x-tar")],
                                               body: .stream(length: total, read: { buf in
                                                   let n = try w.read(into: buf)
                                                   seen.last += Int64(n); seen.calls += 1
                                                   return n
                                               })))
        #expect(r.status == 200)
        #expect(r.headers["x-was-chunked"] == "false")
        #expect(Int64(r.body.count) == total && seen.last == total && seen.calls > 2)
        try writeFile(dir.sub("got.tar"), r.body)
        let py = try run(Repo.python, [Repo.root + "/Tests/interop/tar_tool.py", "list", dir.sub("got.tar")])
        #expect(py.status == 0, "\(py.stderr)")
        let names = (try JSONSerialization.jsonObject(with: py.stdout) as! [[String: Any]]).map { $0["name"] as! String }
        #expect(names == ["a", "a/b", "a/b/two.txt", "a/one.bin", "link", String(repeating: "long", count: 40) + ".csv"])
        // And the packer takes it as it is.
        let store = try FileObjectStore(root: dir.sub("store"), create: true)
        let packed = try Packer(store: store, datasetID: "push", key: try SecureBytes.random(count: 32)).pack(tar: BytesSource(r.body))
        #expect(packed.files == 3 && packed.symlinks == 1 && packed.directories == 3)
    }
}
