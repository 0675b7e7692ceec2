// Uploads end to end: a wallet (eth-account) signs in and approves the plane, pushes the demo
// dataset as a tar stream to a `cce4 plane serve` subprocess, grants a rental, lists versions,
// reads the audit trail; the test then unwraps the DEK itself, decrypts the stored objects and
// compares them with the pushed files, and scans the store and the plane's working directory
// for known plaintext. Then hostile uploads, each refused with the dataset unchanged.
import Dataset
import Envelope
import Foundation
import Ledger
import ObjectStore
@testable import PrivacyPlane
import Testing
import TestSupport
import Wallet

/// eth-account (Tests/interop/eth_tool.py): an independent wallet.
func ethTool(_ cmd: String, _ request: [String: Any]) throws -> Any {
    let r = try run(Repo.python, [Repo.root + "/Tests/interop/eth_tool.py", cmd], input: try JSONSerialization.data(withJSONObject: request))
    guard r.status == 0 else { throw TestFailure("eth_tool \(cmd): \(r.stderr)") }
    return try JSONSerialization.jsonObject(with: r.stdout)
}

/// Every regular file under `dir`, relative path → bytes.
func filesUnder(_ dir: String) throws -> [String: [UInt8]] {
    var out = [String: [UInt8]]()
    guard let e = FileManager.default.enumerator(atPath: dir) else { return out }
    while let rel = e.nextObject() as? String {
        var isDir: ObjCBool = false
        let full = dir + "/" + rel
        guard FileManager.default.fileExists(atPath: full, isDirectory: &isDir), !isDir.boolValue else { continue }
        if let attrs = try? FileManager.default.attributesOfItem(atPath: full), attrs[.type] as? FileAttributeType == .typeSymbolicLink { continue }
        out[rel] = try readFile(full)
    }
    return out
}

func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
    guard needle.count > 0, hay.count >= needle.count else { return false }
    let first = needle[0]
    var i = 0
    while i <= hay.count - needle.count {
        if hay[i] == first && Array(hay[i..<(i + needle.count)]) == needle { return true }
        i += 1
    }
    return false
}

/// A tar made by Python's tarfile with the given (name, content) members.
func pythonTar(_ members: [(String, String)], to path: String) throws {
    let spec = try JSONSerialization.data(withJSONObject: members.map { ["name": $0.0, "data": $0.1] })
    let script = """
    import io, json, sys, tarfile
    members = json.load(sys.stdin)
    with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
        for m in members:
            data = m["data"].encode()
            info = tarfile.TarInfo(m["name"]); info.size = len(data); info.mode = 0o644
            t.addfile(info, io.BytesIO(data))
    """
    let r = try run(Repo.python, ["-c", script, path], input: spec)
    guard r.status == 0 else { throw TestFailure("tarfile: \(r.stderr)") }
}

@Suite(.serialized) struct UploadTests {
    @Test func endToEndWithAWallet() throws {
        let d = try Deployment()
        let plane = try RunningPlane(d)
        // The demo dataset, and a POSIX tar of it made by GNU tar.
        let src = d.dir.sub("demo")
        let mk = try run(Repo.python, [Repo.root + "/scripts/make_demo_data.py", src])
        #expect(mk.status == 0, "\(mk.stderr)")
        let tarPath = d.dir.sub("demo.tar")
        let t = try run("/usr/bin/env", ["tar", "--format=posix", "-C", src, "-cf", tarPath, "."])
        #expect(t.status == 0, "\(t.stderr)")

        // Sign in with an eth-account wallet (SIWE) and approve the plane (EIP-712).
        let walletKey = try Random.bytes(32)
        let wallet = try PrivateKey(bytes: walletKey)
        let n = try http("GET", plane.base + "/v1/auth/nonce").json
        let now = Int64(Date().timeIntervalSince1970)
        let msg = SIWEMessage(domain: n["domain"] as! String, address: wallet.address, statement: n["statement"] as? String, uri: n["uri"] as! String,
                              chainID: (n["chainId"] as! NSNumber).uint64Value, nonce: n["nonce"] as! String, issuedAt: SIWETime(unixSeconds: now),
                              expirationTime: SIWETime(unixSeconds: now + 120))
        let sigs = try ethTool("siwe-sign", ["items": [["key": Hex.encode(walletKey), "text": msg.text]]]) as! [String]
        let login = try http("POST", plane.base + "/v1/auth/login", json: ["message": msg.text, "signature": "0x" + sigs[0]])
        #expect(login.status == 200, "\(login.text)")
        let token = login.json["token"] as! String
        let typed = try http("GET", plane.base + "/v1/auth/operator-approval", token: token)
        let typedJSON = try JSONSerialization.jsonObject(with: typed.body)
        let signed = try ethTool("sign-typed", ["items": [["key": Hex.encode(walletKey), "typed": typedJSON]]]) as! [[String: String]]
        let m = typed.json["message"] as! [String: Any]
        let ap = try http("POST", plane.base + "/v1/auth/operator-approval",
                          json: ["expires": m["expires"]!, "nonce": m["nonce"]!, "signature": "0x" + signed[0]["signature"]!], token: token)
        #expect(ap.status == 204, "\(ap.text)")

        // Create, push, rent, list, audit.
        #expect(try http("POST", plane.base + "/v1/datasets", json: ["id": "demo"], token: token).status == 201)
        let tarBytes = try Data(contentsOf: URL(fileURLWithPath: tarPath))
        let put = try http("PUT", plane.base + "/v1/datasets/demo/versions", body: tarBytes, token: token, headers: ["Content-Type": "application/x-tar"])
        #expect(put.status == 201, "\(put.text)")
        let root = put.json["root"] as! String
        let source = try filesUnder(src)
        #expect(put.json["files"] as? Int == source.count)
        #expect((put.json["bytes"] as? NSNumber)?.int64Value == source.values.reduce(Int64(0)) { $0 + Int64($1.count) })

        let renter = try PrivateKey.generate()
        let rent = try http("POST", plane.base + "/v1/datasets/demo/rentals", json: ["user": renter.address.checksummed, "expires": UInt64(now) + 3600], token: token)
        #expect(rent.status == 201)
        let versions = try http("GET", plane.base + "/v1/datasets/demo/versions").json["versions"] as! [[String: Any]]
        #expect(versions.count == 1 && versions[0]["root"] as? String == root)
        #expect(Set(versions[0].keys) == ["root", "files", "bytes", "createdAt"]) // no names
        let audit = try http("GET", plane.base + "/v1/audit?dataset=demo")
        let events = audit.json["events"] as! [[String: Any]]
        #expect(events.contains { $0["event"] as? String == "dataset.version" } && events.contains { $0["event"] as? String == "plane.version.upload" })
        // Proofs verified by `cce4 ledger check-proof`, against the plane's signed checkpoint.
        let operatorAddress = (typed.json["message"] as! [String: Any])["operator"] as! String
        try Data((audit.json["checkpoint"] as! String).utf8).write(to: URL(fileURLWithPath: d.dir.sub("cp")))
        for e in events {
            let proof: [String: Any] = ["type": "inclusion", "leaf_index": e["index"]!, "entry": e["entry"]!, "path": e["proof"]!]
            try JSONSerialization.data(withJSONObject: proof).write(to: URL(fileURLWithPath: d.dir.sub("proof")))
            let c = try run(Repo.binary("cce4"), ["ledger", "check-proof", "--proof", d.dir.sub("proof"), "--checkpoint", d.dir.sub("cp"), "--signer", operatorAddress])
            #expect(c.status == 0, "\(c.stderr)")
        }

        // Decrypt what the store holds with the DEK unwrapped here, and compare.
        let store = try ObjectStores.open(url: d.store)
        let keys = try PlaneKeys(kek: d.kekBytes, insecure: true)
        let dek = try keys.unwrap(try store.get(try ObjectKey("demo/plane/dek/1")).bytes, dataset: "demo", keyNumber: 1)
        let reader = try DatasetReader(store: store, datasetID: "demo", root: try SHA256Digest(hex: root), key: dek)
        for (rel, bytes) in source {
            guard case .entry(let e, _) = try reader.resolve("/" + rel), case .file(let ref) = e.target else { Issue.record("\(rel) is not a file in the version"); continue }
            #expect(try reader.open(ref).read(0..<ref.size) == bytes, "\(rel) differs")
        }

        // No plaintext at rest: scan the store and the plane's working directory.
        let needles = source.values.filter { $0.count >= 48 }.map { Array($0[16..<48]) }
        #expect(!needles.isEmpty)
        for dir in [d.dir.sub("store"), d.dir.sub("work")] {
            for (rel, bytes) in try filesUnder(dir) {
                for nd in needles { #expect(!contains(bytes, nd), "plaintext found in \(dir)/\(rel)") }
            }
        }
        let (status, logs) = plane.stop()
        #expect(status == 0)
        #expect(!logs.contains(token) && !logs.contains("cce4pt1."))
        for nd in needles.prefix(20) { #expect(!contains(Array(logs.utf8), nd)) }
        #expect(logs.contains("sealing=dev-insecure"))
    }

    @Test func hostileUploadsAreRefusedAndChangeNothing() throws {
        let d = try Deployment()
        let p = try RunningPlane(d)
        let alice = try PrivateKey.generate(), bob = try PrivateKey.generate()
        let ta = try p.signInApproved(alice), tb = try p.signInApproved(bob)
        #expect(try http("POST", p.base + "/v1/datasets", json: ["id": "ds"], token: ta).status == 201)
        try pythonTar([("ok.txt", "first version")], to: d.dir.sub("ok.tar"))
        let good = try http("PUT", p.base + "/v1/datasets/ds/versions", body: try Data(contentsOf: URL(fileURLWithPath: d.dir.sub("ok.tar"))), token: ta)
        #expect(good.status == 201, "\(good.text)")
        func versions() throws -> [String] {
            (try http("GET", p.base + "/v1/datasets/ds/versions").json["versions"] as! [[String: Any]]).map { $0["root"] as! String }
        }
        let before = try versions()
        func refused(_ body: Data, _ status: Int, token: String? = nil, headers: [String: String] = [:], _ what: String) throws {
            let r = try http("PUT", p.base + "/v1/datasets/ds/versions", body: body, token: token ?? ta, headers: headers)
            #expect(r.status == status, "\(what): \(r.status) \(r.text)")
            #expect(r.header("Content-Type") == "application/problem+json", "\(what)")
            #expect((r.json["detail"] as? String)?.isEmpty == false, "\(what)")
            #expect(try versions() == before, "\(what) changed the dataset")
        }
        var rng = SeededGenerator(seed: 8)
        try refused(Data(rng.bytes(10_000)), 422, "random bytes")
        try pythonTar([("../x", "escape")], to: d.dir.sub("dotdot.tar"))
        try refused(try Data(contentsOf: URL(fileURLWithPath: d.dir.sub("dotdot.tar"))), 422, "../x")
        try pythonTar([("/etc/passwd-x", "absolute")], to: d.dir.sub("abs.tar"))
        try refused(try Data(contentsOf: URL(fileURLWithPath: d.dir.sub("abs.tar"))), 422, "absolute name")
        var truncated = Array(try Data(contentsOf: URL(fileURLWithPath: d.dir.sub("ok.tar")))); truncated.removeLast(truncated.count - 700)
        try refused(Data(truncated), 422, "truncated")
        try refused(Data(count: 9 << 20), 413, "oversized")
        // Oversized without a Content-Length (chunked): refused while streaming.
        try FileManager.default.createDirectory(atPath: d.dir.sub("bigdir"), withIntermediateDirectories: true)
        try writeFile(d.dir.sub("bigdir/member"), [UInt8](repeating: 7, count: 9 << 20))
        #expect(try run("/usr/bin/env", ["tar", "-C", d.dir.sub("bigdir"), "-cf", d.dir.sub("big"), "member"]).status == 0)
        let chunked = try run("/usr/bin/env", ["curl", "-sS", "-o", d.dir.sub("chunked.out"), "-w", "%{http_code}", "-X", "PUT",
                                               "-H", "Authorization: Bearer \(ta)", "-H", "Content-Type: application/x-tar", "-H", "Transfer-Encoding: chunked",
                                               "--data-binary", "@" + d.dir.sub("big"), p.base + "/v1/datasets/ds/versions"])
        #expect(chunked.stdoutText == "413", "chunked: \(chunked.stdoutText) \(chunked.stderr)")
        #expect(try versions() == before)
        try refused(Data(try Data(contentsOf: URL(fileURLWithPath: d.dir.sub("ok.tar")))), 403, token: tb, "another address's token")
        try refused(Data([1, 2, 3]), 401, token: "cce4pt1.x", "bad token")
        try refused(Data([1, 2, 3]), 415, headers: ["Content-Type": "text/plain"], "wrong type")
        // Delete: the owner only; then the version is gone from the list and its objects from the store.
        #expect(try http("DELETE", p.base + "/v1/datasets/ds/versions/\(before[0])", token: tb).status == 403)
        #expect(try http("DELETE", p.base + "/v1/datasets/ds/versions/\(String(repeating: "0", count: 64))", token: ta).status == 404)
        #expect(try http("DELETE", p.base + "/v1/datasets/ds/versions/\(before[0])", token: ta).status == 204)
        #expect(try versions().isEmpty)
        let left = try ObjectStores.open(url: d.store).listAll(prefix: "ds/").map(\.key.rawValue).filter { !$0.hasPrefix("ds/plane/") }
        #expect(left.isEmpty, "objects left after delete: \(left)")
        let kinds = (try http("GET", p.base + "/v1/audit?dataset=ds").json["events"] as! [[String: Any]]).map { $0["event"] as! String }
        #expect(kinds.contains("plane.version.delete"))
    }
}

extension UploadTests {
    /// Peak resident memory of a process (VmHWM), bytes.
    static func peakRSS(_ pid: Int32) -> Int64 {
        guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kb = Int64(line.split(separator: " ", omittingEmptySubsequences: true)[1]) else { return -1 }
        return kb * 1024
    }

    @Test func aLargeUploadStreamsInBoundedMemory() throws {
        let d = try Deployment()
        let p = try RunningPlane(d, extra: ["--max-upload-bytes", String(1 << 30)])
        let t = try p.signInApproved(try PrivateKey.generate())
        #expect(try http("POST", p.base + "/v1/datasets", json: ["id": "big"], token: t).status == 201)
        let before = Self.peakRSS(p.proc.processIdentifier)
        // One 64 MiB member, streamed by curl from disk (no Content-Length buffering client-side).
        try FileManager.default.createDirectory(atPath: d.dir.sub("bigsrc"), withIntermediateDirectories: true)
        var rng = SeededGenerator(seed: 64)
        let fh = FileHandle(forWritingAtPath: { _ = FileManager.default.createFile(atPath: d.dir.sub("bigsrc/f"), contents: nil); return d.dir.sub("bigsrc/f") }())!
        for _ in 0..<64 { fh.write(Data(rng.bytes(1 << 20))) }
        try fh.close()
        #expect(try run("/usr/bin/env", ["tar", "-C", d.dir.sub("bigsrc"), "-cf", d.dir.sub("big.tar"), "f"]).status == 0)
        let r = try run("/usr/bin/env", ["curl", "-sS", "-o", d.dir.sub("big.out"), "-w", "%{http_code}", "-T", d.dir.sub("big.tar"),
                                          "-H", "Authorization: Bearer \(t)", "-H", "Content-Type: application/x-tar", p.base + "/v1/datasets/big/versions"])
        #expect(r.stdoutText == "201", "\(r.stderr) \((try? String(contentsOfFile: d.dir.sub("big.out"), encoding: .utf8)) ?? "")")
        let after = Self.peakRSS(p.proc.processIdentifier)
        // The archive is 64 MiB; the plane's peak grows by the pipe (4 MiB), the packer's
        // buffers and allocator slack, far below the archive.
        #expect(after - before < 40 << 20, "peak RSS grew by \((after - before) >> 20) MiB for a 64 MiB upload")
        print("plane peak RSS: \(before >> 20) MiB before, \(after >> 20) MiB after a 64 MiB upload")
    }
}

extension UploadTests {
    /// The client side from the tar branch against this plane: `cce4 dataset push` (a keystore
    /// wallet, --create --approve) and `cce4 plane versions`; the pushed files read back.
    @Test func cce4DatasetPushAgainstThePlane() throws {
        let d = try Deployment()
        let p = try RunningPlane(d)
        let cce4 = Repo.binary("cce4")
        try writeFile(d.dir.sub("pw"), Array("correct horse\n".utf8))
        let w = try run(cce4, ["wallet", "new", "--keystore", d.dir.sub("wallet.json"), "--password-file", d.dir.sub("pw"), "--kdf", "light"])
        #expect(w.status == 0, "\(w.stderr)")
        let src = d.dir.sub("src")
        try FileManager.default.createDirectory(atPath: src + "/sub", withIntermediateDirectories: true)
        try writeFile(src + "/a.csv", Array("id,age\n1,61\n2,73\n".utf8))
        try writeFile(src + "/sub/b.txt", Array(repeating: UInt8(ascii: "z"), count: 100_000))
        let push = try run(cce4, ["dataset", "push", src, "--plane", p.base, "--wallet", d.dir.sub("wallet.json"), "--password-file", d.dir.sub("pw"),
                                  "--dataset", "pushed", "--create", "--approve", "--quiet"])
        #expect(push.status == 0, "\(push.stderr)")
        let root = push.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(root.count == 64, "\(push.stdoutText)")
        let v = try run(cce4, ["plane", "versions", "--plane", p.base, "--wallet", d.dir.sub("wallet.json"), "--password-file", d.dir.sub("pw"), "--dataset", "pushed"])
        #expect(v.status == 0 && v.stdoutText.contains(root), "\(v.stdoutText) \(v.stderr)")
        let listed = try http("GET", p.base + "/v1/datasets/pushed/versions").json["versions"] as! [[String: Any]]
        #expect(listed.first?["files"] as? Int == 2 && (listed.first?["bytes"] as? NSNumber)?.intValue == 100_000 + 17)
        // Read back with the DEK unwrapped here.
        let store = try ObjectStores.open(url: d.store)
        let dek = try PlaneKeys(kek: d.kekBytes, insecure: true).unwrap(try store.get(try ObjectKey("pushed/plane/dek/1")).bytes, dataset: "pushed", keyNumber: 1)
        let reader = try DatasetReader(store: store, datasetID: "pushed", root: try SHA256Digest(hex: root), key: dek)
        guard case .entry(let e, _) = try reader.resolve("/sub/b.txt"), case .file(let ref) = e.target else { Issue.record("b.txt missing"); return }
        #expect(try reader.open(ref).read(0..<ref.size) == Array(repeating: UInt8(ascii: "z"), count: 100_000))
        #expect(p.stop().status == 0)
    }
}

extension UploadTests {
    /// SIGTERM while an upload is streaming: the plane stops accepting, finishes the upload
    /// (201, recorded), then exits 0.
    @Test func sigtermLetsAnUploadInFlightFinish() throws {
        let d = try Deployment()
        let p = try RunningPlane(d)
        let t = try p.signInApproved(try PrivateKey.generate())
        #expect(try http("POST", p.base + "/v1/datasets", json: ["id": "slow"], token: t).status == 201)
        try FileManager.default.createDirectory(atPath: d.dir.sub("slowsrc"), withIntermediateDirectories: true)
        var rng = SeededGenerator(seed: 3)
        try writeFile(d.dir.sub("slowsrc/f"), rng.bytes(3 << 20))
        #expect(try run("/usr/bin/env", ["tar", "-C", d.dir.sub("slowsrc"), "-cf", d.dir.sub("slow.tar"), "f"]).status == 0)
        let curl = Process()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        curl.arguments = ["curl", "-sS", "-o", d.dir.sub("slow.out"), "-w", "%{http_code}", "--limit-rate", "1M", "-T", d.dir.sub("slow.tar"),
                          "-H", "Authorization: Bearer \(t)", "-H", "Content-Type: application/x-tar", p.base + "/v1/datasets/slow/versions"]
        let out = Pipe()
        closeOnExec(out)
        curl.standardOutput = out
        try curl.run()
        Thread.sleep(forTimeInterval: 1.0) // about a third of the body is in
        let (status, log) = p.stop() // SIGTERM, then wait for the exit
        curl.waitUntilExit()
        let code = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(code == "201", "upload during shutdown: \(code) \((try? String(contentsOfFile: d.dir.sub("slow.out"), encoding: .utf8)) ?? "")")
        #expect(status == 0, "\(log.suffix(1000))")
        // The version was recorded before the plane exited.
        let again = try RunningPlane(d)
        #expect((try http("GET", again.base + "/v1/datasets/slow/versions").json["versions"] as? [Any])?.count == 1)
    }
}
