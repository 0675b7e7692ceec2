// End to end: PlaneClient and `cce4 dataset push` against a real plane (`cce4 plane serve`,
// Tests/PlaneTests/Harness.swift) on 127.0.0.1.
import Dataset
import Envelope
import Foundation
import Ledger
import PlaneClient
import Testing
import TestSupport
import Wallet

@Suite("Push through the plane (PlaneClient ↔ PrivacyPlane)")
struct PlanePushTests {
    @Test("sign in, approve, create, push a tree, list versions, audit; hostile archives refused in one line")
    func pushEndToEnd() throws {
        let d = try Deployment()
        let plane = try RunningPlane(d)
        let key = try PrivateKey.generate()
        let c = try PlaneClient(baseURL: plane.base)
        let s = try c.signIn(wallet: key)
        #expect(s.address == key.address.checksummed)

        // Without the approval the plane cannot register the dataset for us.
        do {
            _ = try c.createDataset(id: "cohort-1")
            Issue.record("created without an operator approval")
        } catch let e as PlaneClientError {
            #expect(e.needsOperatorApproval, "\(e)")
            #expect(e.message.contains("cce4 plane approve"))
        }
        let approval = try c.approveOperator(wallet: key, expectedOperator: plane.operatorAddress)
        #expect(approval.owner == key.address && approval.operator == plane.operatorAddress)
        let info = try c.createDataset(id: "cohort-1")
        #expect(info.owner == key.address.checksummed && info.versions.isEmpty)

        // A small tree with every kind of entry, under the harness's 8 MiB upload limit.
        let src = d.dir.sub("src")
        var rng = SeededGenerator(seed: 11)
        try writeFile(src + "/cohort/participants.csv", Array("id,age\n1,71\n2,85\n".utf8))
        try writeFile(src + "/omics/big.bin", rng.bytes(3 << 20))
        try writeFile(src + "/docs/EMPTY", [])
        try writeFile(src + "/" + String(repeating: "deep/", count: 30) + "leaf.txt", Array("leaf".utf8))
        try FileManager.default.createSymbolicLink(atPath: src + "/latest.csv", withDestinationPath: "cohort/participants.csv")
        final class Seen: @unchecked Sendable { var last: Int64 = 0; var total: Int64 = 0 }
        let seen = Seen()
        let v = try c.pushVersion(id: "cohort-1", directory: src) { sent, total in seen.last = sent; seen.total = total }
        #expect(seen.last == seen.total && seen.total > 3 << 20)
        #expect(v.files == 4 && v.bytes == Int64(3 << 20) + 17 + 4, "bytes \(v.bytes)")
        #expect(v.root.count == 64)
        #expect(try c.versions(id: "cohort-1").map(\.root) == [v.root])
        #expect(try c.dataset(id: "cohort-1").versions.map(\.root) == [v.root])

        // The same tree packed locally has the same shape (the key is the plane's: compare counts).
        let audit = try c.audit(dataset: "cohort-1")
        #expect(audit.events.contains { $0.event == "dataset.register" })
        #expect(audit.events.count >= 2, "\(audit.events.map { $0.event ?? "?" })")

        // A hostile archive (".." in a name) is refused with one line, nothing recorded.
        let evil = tarOf([("../escape", [1, 2, 3])])
        do {
            _ = try c.pushVersion(id: "cohort-1", tar: BytesSource(evil), length: Int64(evil.count))
            Issue.record("the plane accepted '..'")
        } catch let e as PlaneClientError {
            #expect(e.status.map { (400..<500).contains($0) } == true, "\(e)")
            #expect(!e.message.contains("\n"))
            #expect(!e.message.contains("escape"), "a file name leaked into the error: \(e)")
        }
        #expect(try c.versions(id: "cohort-1").count == 1)

        // Rentals through the client.
        let bob = try PrivateKey.generate()
        let r = try c.createRental(id: "cohort-1", user: bob.address, expires: Int64(Date().timeIntervalSince1970) + 600)
        #expect(try c.rental(id: "cohort-1", user: bob.address).active)
        try c.endRental(id: "cohort-1", rentalId: r.rentalId.value)
        #expect(try !c.rental(id: "cohort-1", user: bob.address).active)

        // The CLI: a second dataset, created and approved in one go, root on stdout.
        try writeFile(d.dir.sub("pw"), Array("pw\n".utf8))
        let ks = d.dir.sub("me.json")
        #expect(try run(Repo.binary("cce4"), ["wallet", "new", "--keystore", ks, "--password-file", d.dir.sub("pw"), "--kdf", "light"]).status == 0)
        let push = try run(Repo.binary("cce4"), ["dataset", "push", src, "--plane", plane.base, "--wallet", ks, "--password-file", d.dir.sub("pw"),
                                                 "--dataset", "cohort-2", "--create", "--approve"])
        #expect(push.status == 0, "\(push.stderr)")
        let root = push.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(root.count == 64 && push.stderr.contains("pushing:"))
        let listed = try run(Repo.binary("cce4"), ["plane", "versions", "--plane", plane.base, "--dataset", "cohort-2"])
        #expect(listed.status == 0 && listed.stdoutText.hasPrefix(root))
        // Pushing to someone else's dataset: 403 → exit 77, one line.
        let other = try run(Repo.binary("cce4"), ["dataset", "push", src, "--plane", plane.base, "--wallet", ks, "--password-file", d.dir.sub("pw"),
                                                  "--dataset", "cohort-1", "-q"])
        #expect(other.status == 77, "\(other.stderr)")
        #expect(other.stderr.split(separator: "\n").count == 1)
    }
}

/// A ustar archive of regular files (names as given: hostile ones included).
func tarOf(_ files: [(String, [UInt8])]) -> [UInt8] {
    var out = [UInt8]()
    for (name, content) in files {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ b: [UInt8], _ at: Int) { for (i, x) in b.enumerated() { h[at + i] = x } }
        func octal(_ v: Int, _ at: Int, _ w: Int) { let s = String(v, radix: 8); put(Array((String(repeating: "0", count: w - 1 - s.count) + s).utf8), at) }
        put(Array(name.utf8), 0); octal(0o644, 100, 8); octal(0, 108, 8); octal(0, 116, 8); octal(content.count, 124, 12); octal(1_700_000_000, 136, 12)
        h[156] = UInt8(ascii: "0"); put(Array("ustar\u{0}00".utf8), 257); put(Array("        ".utf8), 148)
        let c = String(h.reduce(0) { $0 + Int($1) }, radix: 8)
        put(Array((String(repeating: "0", count: 6 - c.count) + c).utf8) + [0, 0x20], 148)
        out += h + content + [UInt8](repeating: 0, count: (512 - content.count % 512) % 512)
    }
    return out + [UInt8](repeating: 0, count: 1024)
}
