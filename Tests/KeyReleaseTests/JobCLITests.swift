// cce4 job credential / verify-credential, run as a consumer would.
import Envelope
import Foundation
import KeyRelease
import Testing
import TestSupport

@Suite("cce4 job")
struct JobCLITests {
    let env: [String: String] = {
        var e = ProcessInfo.processInfo.environment
        e["CCE4_WALLET_PASSWORD"] = "correct horse"
        return e
    }()
    func cce4(_ args: [String]) throws -> ProcessResult { try run(Repo.binary("cce4"), args, environment: env) }

    @Test("a credential made from a keystore verifies in process and with verify-credential; a tampered one exits 65")
    func credential() throws {
        let dir = TempDir("cce4-job")
        let address = try cce4(["wallet", "new", "--keystore", dir.sub("w.json"), "--kdf", "light"]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        let root = SHA256Digest.hash(Array("v1".utf8)).hex
        let made = try cce4(["job", "credential", "--keystore", dir.sub("w.json"), "--job", "analysis-7", "--dataset", "cohort@\(root)",
                             "--dataset", "aging.omics@0x\(root)", "--measurement", String(repeating: "ab", count: 48), "--image", "sha256:feed",
                             "--valid-for", "600", "--output", dir.sub("c.json")])
        #expect(made.status == 0, "\(made.stderr)")
        let c = try JSONDecoder().decode(JobCredential.self, from: Data(try readFile(dir.sub("c.json"))))
        #expect(c.signer == address)
        #expect(c.datasets.map(\.id) == ["aging.omics", "cohort"])
        let now = UInt64(Date().timeIntervalSince1970)
        #expect(try c.verify(now: now).checksummed == address)
        #expect(c.expires > now + 590 && c.expires <= now + 601)
        let v = try cce4(["job", "verify-credential", dir.sub("c.json")])
        #expect(v.status == 0, "\(v.stderr)")
        #expect(v.stdoutText.hasPrefix("cce4long job credential v1\njob: analysis-7\n"))
        #expect(v.stdoutText.contains("signed by \(address)"))
        var t = c; t.job = "analysis-8"
        try writeFile(dir.sub("t.json"), Array(try JSONEncoder().encode(t)))
        let bad = try cce4(["job", "verify-credential", dir.sub("t.json")])
        #expect(bad.status == 65)
        #expect(bad.stderr.contains("signed by"))
        let usage = try cce4(["job", "credential", "--keystore", dir.sub("w.json"), "--job", "j", "--dataset", "cohort", "--measurement", "00", "--image", "x"])
        #expect(usage.status == 64)
    }

    @Test("--help on every job command")
    func help() throws {
        for args in [["job", "--help"], ["job", "credential", "--help"], ["job", "verify-credential", "--help"]] {
            let r = try cce4(args)
            #expect(r.status == 0)
            #expect(r.stdoutText.contains("USAGE"), "\(args)")
        }
        #expect(try cce4(["job", "credential", "--help"]).stdoutText.contains("EIP-191"))
    }
}
