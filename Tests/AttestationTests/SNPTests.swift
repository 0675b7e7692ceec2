// The SEV-SNP verifier against real reports, VCEKs and AMD's ASK/ARK.
@testable import Attestation
import Foundation
import TestSupport
import Testing

@Suite("SEV-SNP reports")
struct SNPTests {
    func verify(_ report: [UInt8], _ c: SNPCollateral, policy: Policy = Fixtures.snpPolicy, at: Date = Fixtures.snpTime) throws(AttestationError) -> AttestationResult {
        try AttestationVerifier.verify(report, collateral: .snp(c), policy: policy, at: at)
    }

    @Test("the Milan report verifies against its VCEK and the pinned ARK")
    func milan() throws {
        let b = try Fixtures.bytes(Fixtures.snpReport)
        let r = try verify(b, try Fixtures.snpCollateral())
        let c = r.claims
        #expect(c.platform == .sevSNP && !c.debug && c.vmpl == 0 && c.snpPolicy == 0x3001f)
        #expect(c.measurement == Array(b[0x90..<0xC0]) && c.hostData == Array(b[0xC0..<0xE0]) && c.reportData == Array(b[0x50..<0x90]))
        #expect(c.tcb == "bl=3 tee=0 snp=8 ucode=115")
        #expect(r.verdict == .accepted)
        // The default policy wants revocation checked; the test evidence has no AMD CRL.
        #expect(try verify(b, try Fixtures.snpCollateral(), policy: .inspection).verdict == .refused([.revocationNotChecked]))
        var p = Fixtures.snpPolicy
        p.minimumSNPTCB = SNPTCB(bootloader: 3, tee: 0, snp: 9, microcode: 115)
        #expect(try verify(b, try Fixtures.snpCollateral(), policy: p).verdict == .refused([.minimumTCB]))
    }

    @Test("the debug-policy report verifies and is refused by policy")
    func debugPolicy() throws {
        let b = try Fixtures.bytes(Fixtures.snpDebugReport)
        let r = try verify(b, try Fixtures.snpCollateral(vcek: "snp/go-sev-guest_vcek.testcer"))
        #expect(r.claims.debug)
        #expect(r.verdict == .refused([.debug]))
    }

    @Test("the invalid VCEKs, another chip's VCEK, another product's ARK are refused")
    func refused() throws {
        let b = try Fixtures.bytes(Fixtures.snpReport)
        for bad in ["snp/trustee_test-vcek-invalid-legacy.der", "snp/trustee_test-vcek-invalid-new.der"] {
            #expect(failedCheck { _ = try verify(b, try! Fixtures.snpCollateral(vcek: bad)) } == .certificateChain, "\(bad)")
        }
        #expect(failedCheck { _ = try verify(b, try! Fixtures.snpCollateral(vcek: "snp/go-sev-guest_vcek.testcer")) } == .reportSignature)
        #expect(failedCheck { _ = try verify(b, try! Fixtures.snpCollateral(chain: "snp/ask_ark_genoa.pem")) } == .certificateChain)
        #expect(failedCheck { _ = try verify(b, try! Fixtures.snpCollateral(chain: "snp/ask_ark_milan_vlek.pem")) } == .certificateChain)
        // Before the VCEK was issued.
        #expect(failedCheck { _ = try verify(b, try! Fixtures.snpCollateral(), at: Date(timeIntervalSince1970: 1_600_000_000)) } == .certificateChain)
    }

    @Test("an AMD CRL is checked on the ASK: a CRL that does not parse, or from another issuer, fails")
    func crl() throws {
        let b = try Fixtures.bytes(Fixtures.snpReport)
        var c = try Fixtures.snpCollateral()
        c.crl = [0x30, 0x03, 0x02, 0x01, 0x00]
        #expect(failedCheck { _ = try verify(b, c, policy: .inspection) } == .collateral)
        // Intel's root CRL is a valid CRL, but not the ARK's: no CRL for the ASK.
        c.crl = try Fixtures.bytes("tdx/rootcrl.der")
        #expect(failedCheck { _ = try verify(b, c, policy: .inspection) } == .revocation)
    }

    @Test("collateral directory: vcek.der and cert_chain.pem")
    func directory() throws {
        let d = try Fixtures.collateralDir(["vcek.der": "snp/trustee_test-vcek.der", "cert_chain.pem": "snp/ask_ark_milan.pem"])
        let c = try SNPCollateral.load(directory: d.path)
        #expect(try verify(try Fixtures.bytes(Fixtures.snpReport), c).verdict == .accepted)
    }
}
