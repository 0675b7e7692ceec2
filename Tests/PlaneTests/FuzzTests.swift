// A bounded schemathesis run (PyPI) generated from docs/openapi.json against a real plane,
// signed in and approved so that authenticated operations are reached: no 5xx, responses
// conform to the document, undeclared methods get 405.
import Foundation
import Testing
import TestSupport
import Wallet

@Suite struct FuzzTests {
    @Test func schemathesisFromTheOpenAPIDocument() throws {
        let d = try Deployment()
        // With an attestation policy, so the key-release routes are fuzzed past their 503.
        try writeFile(d.dir.sub("policy.json"), Array("{\"measurements\": [\"\(String(repeating: "ab", count: 48))\"], \"allowSimulated\": true}".utf8))
        let p = try RunningPlane(d, extra: ["--attestation-policy", d.dir.sub("policy.json")])
        let key = try PrivateKey.generate()
        let token = try p.signInApproved(key)
        #expect(try http("POST", p.base + "/v1/datasets", json: ["id": "fuzz"], token: token).status == 201)
        let schemathesis = (Repo.python as NSString).deletingLastPathComponent + "/schemathesis"
        // positive_data_acceptance is left out: EIP-55 checksums are not expressible in JSON
        // Schema, so a random mixed-case address matches the pattern yet is rightly refused (422).
        let r = try run(schemathesis, ["run", p.base + "/openapi.json", "--checks", "all", "--exclude-checks", "positive_data_acceptance",
                                       "--max-examples", "25", "--seed", "4242", "--workers", "1", "--request-timeout", "20",
                                       "--header", "Authorization: Bearer \(token)", "--no-color"],
                        cwd: d.dir.path, // schemathesis keeps a cache in its working directory
                        environment: ProcessInfo.processInfo.environment.merging(["SCHEMATHESIS_HOOKS": ""]) { $1 })
        let out = r.stdoutText
        let failures = out.range(of: "=== FAILURES ===") != nil
        #expect(!failures, "schemathesis found failures:\n\(out.suffix(6000))")
        #expect(!out.contains("Server error") && !out.contains("[500]") && !out.contains("[503]"), "\(out.suffix(4000))")
        #expect(out.contains("SUMMARY"), "schemathesis did not run: \(r.stderr.suffix(2000)) \(out.suffix(2000))")
        let (status, log) = p.stop()
        #expect(status == 0, "the plane did not survive the fuzz run: \(log.suffix(2000))")
    }
}
