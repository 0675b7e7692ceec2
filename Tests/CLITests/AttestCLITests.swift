// cce4 attest, run as a user would, against the real evidence in ../shared/testdata/attestation.
import Foundation
import TestSupport
import Testing

@Suite("cce4 attest")
struct AttestCLITests {
    let data = Repo.shared + "/testdata/attestation"
    var bin: String { Repo.binary("cce4") }

    /// A collateral directory of symlinks named as `cce4 attest verify` reads them.
    func collateral(_ links: [String: String]) throws -> TempDir {
        let d = TempDir("cce4-attest")
        for (name, target) in links { try FileManager.default.createSymbolicLink(atPath: d.sub(name), withDestinationPath: data + "/" + target) }
        return d
    }

    var tdx: [String: String] {
        ["tcb_info.json": "tdx/sample_tcbInfo_response", "qe_identity.json": "tdx/sample_qeIdentity_response",
         "pck_crl.der": "tdx/pckcrl", "root_crl.der": "tdx/rootcrl.der"]
    }

    @Test("TDX: claims and verdict; policy refusal exits 1; expired collateral exits 65")
    func tdxQuotes() throws {
        let c = try collateral(tdx)
        let prod = try run(bin, ["attest", "verify", data + "/tdx/tdx_prod_quote_SPR_E4.dat", "--collateral", c.path, "--at", "2023-06-20T00:00:00Z",
                                 "--accept-tcb", "UpToDate", "--accept-tcb", "NotSupported",
                                 "--measurement", "6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb",
                                 "--report-data", "6c62dec1b8191749a31dab490be532a35944dea47caef1f980863993d9899545eb7406a38d1eed313b987a467dacead6f0c87a6d766c66f6f29f8acb281f1113"])
        #expect(prod.status == 0, "\(prod.stdoutText) \(prod.stderr)")
        #expect(prod.stdoutText.contains("platform:                Intel TDX\n"))
        #expect(prod.stdoutText.contains("mrtd:                    6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb\n"))
        #expect(prod.stdoutText.contains("tcb_status:              NotSupported\n"))
        #expect(prod.stdoutText.contains("revocation:              checked (CRLs)\n"))
        #expect(prod.stdoutText.hasSuffix("verdict:                 ACCEPTED\n"))

        let debug = try run(bin, ["attest", "verify", data + "/tdx/trustee_tdx_quote_4_debug.dat", "--collateral", c.path, "--at", "@1687219200", "--any-measurement", "--any-report-data"])
        #expect(debug.status == 1)
        #expect(debug.stdoutText.contains("debug:                   YES\n") && debug.stdoutText.contains("tcb_status:              UpToDate\n"))
        #expect(debug.stdoutText.hasSuffix("verdict:                 REFUSED by policy: the guest is debuggable (debug attribute/policy bit set)\n"))

        let expired = try run(bin, ["attest", "verify", data + "/tdx/trustee_tdx_quote_4_debug.dat", "--collateral", c.path, "--at", "2024-06-01T00:00:00Z"])
        #expect(expired.status == 65)
        #expect(expired.stdoutText == "verdict:                 INVALID (revocation)\n")
        #expect(expired.stderr.hasPrefix("cce4: error: evidence did not verify: revocation: PCK chain: CRL has expired"))

        let noCollateral = try run(bin, ["attest", "verify", data + "/tdx/tdx_prod_quote_SPR_E4.dat"])
        #expect(noCollateral.status == 66 && noCollateral.stdoutText.isEmpty)
        #expect(noCollateral.stderr.contains("https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=50806f000000"))
        let missing = try run(bin, ["attest", "verify", data + "/tdx/absent.dat"])
        #expect(missing.status == 66)
        let badTime = try run(bin, ["attest", "verify", data + "/tdx/tdx_prod_quote_SPR_E4.dat", "--at", "yesterday"])
        #expect(badTime.status == 64)
    }

    @Test("SEV-SNP: the Milan report is accepted; the debug one refused; an invalid VCEK fails")
    func snpReports() throws {
        let c = try collateral(["vcek.der": "snp/trustee_test-vcek.der", "cert_chain.pem": "snp/ask_ark_milan.pem"])
        // Unpinned, the default policy refuses it: an unpinned image and unbound report data prove nothing.
        let unpinned = try run(bin, ["attest", "verify", data + "/snp/trustee_test-report.bin", "--collateral", c.path, "--at", "2024-01-01T00:00:00Z", "--allow-no-crl"])
        #expect(unpinned.status == 1 && unpinned.stdoutText.contains("no measurement allow-list") && unpinned.stdoutText.contains("no minimum SEV-SNP TCB"))
        let ok = try run(bin, ["attest", "verify", data + "/snp/trustee_test-report.bin", "--collateral", c.path, "--at", "2024-01-01T00:00:00Z", "--allow-no-crl",
                                "--any-measurement", "--any-report-data", "--min-snp-tcb", "bl=3,tee=0,snp=8,ucode=115"])
        #expect(ok.status == 0, "\(ok.stdoutText) \(ok.stderr)")
        #expect(ok.stdoutText.contains("platform:                AMD SEV-SNP\n") && ok.stdoutText.contains("tcb:                     bl=3 tee=0 snp=8 ucode=115\n"))
        let strict = try run(bin, ["attest", "verify", data + "/snp/trustee_test-report.bin", "--collateral", c.path, "--at", "2024-01-01T00:00:00Z"])
        #expect(strict.status == 1 && strict.stdoutText.contains("revocation not checked"))

        let d = try collateral(["vcek.der": "snp/go-sev-guest_vcek.testcer", "cert_chain.pem": "snp/ask_ark_milan.pem"])
        let debug = try run(bin, ["attest", "verify", data + "/snp/go-sev-guest_attestation_debug.bin", "--collateral", d.path, "--at", "2024-01-01T00:00:00Z", "--allow-no-crl"])
        #expect(debug.status == 1 && debug.stdoutText.contains("policy:                  0xb0000\n"))

        let bad = try collateral(["vcek.der": "snp/trustee_test-vcek-invalid-new.der", "cert_chain.pem": "snp/ask_ark_milan.pem"])
        let invalid = try run(bin, ["attest", "verify", data + "/snp/trustee_test-report.bin", "--collateral", bad.path, "--at", "2024-01-01T00:00:00Z", "--allow-no-crl"])
        #expect(invalid.status == 65 && invalid.stdoutText == "verdict:                 INVALID (certificateChain)\n")
    }

    @Test("--policy FILE: the allow-list and TCB statuses from a file; a bad file is a usage error")
    func policyFile() throws {
        let c = try collateral(tdx)
        let d = TempDir("cce4-attest")
        let quote = data + "/tdx/tdx_prod_quote_SPR_E4.dat"
        let mrtd = "6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb"
        try writeFile(d.sub("ok.json"), Array(#"{"measurements": ["\#(mrtd)"], "anyReportData": true, "acceptTCB": ["UpToDate", "NotSupported"]}"#.utf8))
        let ok = try run(bin, ["attest", "verify", quote, "--collateral", c.path, "--at", "2023-06-20T00:00:00Z", "--policy", d.sub("ok.json")])
        #expect(ok.status == 0, "\(ok.stdoutText) \(ok.stderr)")
        try writeFile(d.sub("other.json"), Array(#"{"measurements": ["\#(String(repeating: "00", count: 48))"], "anyReportData": true, "acceptTCB": ["NotSupported"]}"#.utf8))
        let other = try run(bin, ["attest", "verify", quote, "--collateral", c.path, "--at", "2023-06-20T00:00:00Z", "--policy", d.sub("other.json")])
        #expect(other.status == 1 && other.stdoutText.hasSuffix("REFUSED by policy: measurement not on the allow-list\n"))
        try writeFile(d.sub("bad.json"), Array(#"{"allow_debug": true}"#.utf8))
        let bad = try run(bin, ["attest", "verify", quote, "--collateral", c.path, "--policy", d.sub("bad.json")])
        #expect(bad.status == 64 && bad.stderr.contains("unknown policy key \"allow_debug\""))
        let missing = try run(bin, ["attest", "verify", quote, "--collateral", c.path, "--policy", d.sub("absent.json")])
        #expect(missing.status == 66)
    }

    @Test("simulate, then verify: refused by default, accepted and labelled with --allow-simulated")
    func simulated() throws {
        let d = TempDir("cce4-attest")
        let rd = String(repeating: "ab", count: 64)
        let s = try run(bin, ["attest", "simulate", "--key-file", d.sub("sim.key"), "--report-data", rd, "-o", d.sub("report.bin")])
        #expect(s.status == 0, "\(s.stderr)")
        var st = stat()
        #expect(stat(d.sub("sim.key"), &st) == 0 && st.st_mode & 0o777 == 0o600)
        let refused = try run(bin, ["attest", "verify", d.sub("report.bin")])
        #expect(refused.status == 1 && refused.stdoutText.contains("SIMULATED") && refused.stdoutText.contains("simulated evidence is not allowed"))
        let ok = try run(bin, ["attest", "verify", d.sub("report.bin"), "--allow-simulated", "--report-data", rd, "--any-measurement"])
        #expect(ok.status == 0 && ok.stdoutText.contains("platform:                simulated (SIMULATED"))
    }
}
