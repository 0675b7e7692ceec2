// The TDX verifier against Intel's real quotes and PCS collateral.
@testable import Attestation
import Foundation
import TestSupport
import Testing

@Suite("TDX quotes")
struct TDXTests {
    func verify(_ quote: [UInt8], _ c: TDXCollateral? = nil, at: Date = Fixtures.tdxTime, policy: Policy = .inspection) throws(AttestationError) -> AttestationResult {
        let col: TDXCollateral
        do { col = try c ?? Fixtures.tdxCollateral() } catch { throw .collateral("fixture") }
        return try AttestationVerifier.verify(quote, collateral: .tdx(col), policy: policy, at: at)
    }

    @Test("the production quote verifies at a time inside the collateral's validity, with its TCB status")
    func production() throws {
        let q = try Fixtures.bytes(Fixtures.prodQuote)
        let r = try verify(q)
        let c = r.claims
        #expect(c.platform == .tdx && !c.simulated && !c.debug && c.revocationChecked)
        #expect(c.measurement == Array(q[(48 + 136)..<(48 + 184)]))
        #expect(c.reportData == Array(q[(48 + 520)..<(48 + 584)]))
        #expect(c.rtmrs.count == 4 && c.mrConfigID?.count == 48)
        #expect(c.tcb == "03000400000000000000000000000000")
        // TEE_TCB_SVN[2] = 4 is below both TDX TCB levels of the sample TCB info (which need 5):
        // Intel's algorithm finds no level, so the status is NotSupported, and the default policy refuses it.
        #expect(c.tcbStatus == .notSupported)
        #expect(r.verdict == .refused([.tcbStatus(.notSupported)]))
        var lenient = Policy.inspection
        lenient.acceptedTCBStatuses = [.upToDate, .notSupported]
        lenient.allowedMeasurements = [c.measurement]
        lenient.expectedReportData = c.reportData
        #expect(try verify(q, policy: lenient).verdict == .accepted)
        lenient.expectedReportData = [UInt8](repeating: 0, count: 64)
        #expect(try verify(q, policy: lenient).verdict == .refused([.reportData]))
    }

    @Test("the debug TD's quote verifies cryptographically (UpToDate) and the default policy refuses it")
    func debugTD() throws {
        let q = try Fixtures.bytes(Fixtures.debugQuote)
        let r = try verify(q)
        #expect(r.claims.debug && r.claims.tcbStatus == .upToDate && r.claims.revocationChecked)
        #expect(r.verdict == .refused([.debug]))
        var p = Policy.inspection
        p.allowDebug = true
        #expect(try verify(q, policy: p).verdict == .accepted)
    }

    @Test("the collateral from the wrong platform, expired collateral, missing CRLs")
    func collateralChecks() throws {
        let q = try Fixtures.bytes(Fixtures.debugQuote)
        // The trustee TCB info (FMSPC 00A06D080000, signed by the 2025 TCB signing certificate) is for another platform.
        let trustee = TDXCollateral(tcbInfo: try Fixtures.bytes("tdx/trustee_tcbInfo.json"), qeIdentity: try Fixtures.bytes("tdx/trustee_enclaveIdentity.json"))
        #expect(failedCheck { _ = try verify(q, trustee, at: Fixtures.trusteeTime) } == .collateralMismatch)
        // A month after nextUpdate the CRLs have expired (checked first, with the chain) ...
        let later = Fixtures.tdxTime.addingTimeInterval(40 * 86400)
        #expect(failedCheck { _ = try verify(q, at: later) } == .revocation)
        // ... and without CRLs, the TCB info has.
        var noCRL = try Fixtures.tdxCollateral()
        noCRL.pckCRL = nil
        noCRL.rootCRL = nil
        #expect(failedCheck { _ = try verify(q, noCRL, at: later) } == .collateralValidity)
        // Without CRLs at a valid time it verifies, says so, and the default policy refuses.
        let r = try verify(q, noCRL)
        #expect(!r.claims.revocationChecked)
        #expect(r.verdict == .refused([.debug, .revocationNotChecked]))
        // Before the PCK certificate existed.
        // (With CRLs, OpenSSL reports the CRLs' validity first: revocation is checked before signatures and dates.)
        #expect(failedCheck { _ = try verify(q, at: Date(timeIntervalSince1970: 1_600_000_000)) } == .revocation)
        #expect(failedCheck { _ = try verify(q, noCRL, at: Date(timeIntervalSince1970: 1_600_000_000)) } == .certificateChain)
        // Another QE identity: the prod quote's QE against a tampered-but-unsigned identity fails its signature.
        var c = try Fixtures.tdxCollateral()
        c.qeIdentity = Array(String(decoding: c.qeIdentity, as: UTF8.self).replacingOccurrences(of: "\"isvprodid\":2", with: "\"isvprodid\":3").utf8)
        #expect(failedCheck { _ = try verify(q, c) } == .qeIdentitySignature)
        // The TCB signing chain from a file (as PCS's TCB-Info-Issuer-Chain header carries it) ...
        var d = try Fixtures.tdxCollateral()
        let quote = try TDXQuote(q)
        let chain = pemBlocks(Array(q[quote.pckChain]))
        let signing2018 = Array(Data(base64Encoded: TrustAnchors.intelTCBSigning[0], options: .ignoreUnknownCharacters)!)
        d.tcbSigningChain = pem([signing2018, chain[2]])
        #expect(try verify(q, d).verdict == .refused([.debug]))
        // ... the 2025 reissue is not yet valid in 2023 ...
        let signing2025 = Array(Data(base64Encoded: TrustAnchors.intelTCBSigning[1], options: .ignoreUnknownCharacters)!)
        d.tcbSigningChain = pem([signing2025, chain[2]])
        #expect(failedCheck { _ = try verify(q, d) } == .tcbSigningChain)
        // ... and other Intel certificates, valid and issued by the root, are not TCB signing certificates.
        for other in [chain[1], chain[2]] {
            d.tcbSigningChain = pem([other])
            #expect(failedCheck { _ = try verify(q, d) } == .tcbSigningChain)
        }
    }

    @Test("a v5 quote (TD report 1.0 body behind a body type and size) parses; all but the quote signature verifies")
    func version5() throws {
        let v4 = try Fixtures.bytes(Fixtures.prodQuote)
        // Rewrite the real v4 quote in the v5 layout: version 5, then body type 2, body size 584.
        var v5 = Array(v4[0..<48])
        v5[0] = 5
        v5 += [2, 0] + [0x48, 0x02, 0, 0] + Array(v4[48...])
        let quote = try TDXQuote(v5)
        #expect(quote.version == 5 && quote.bodyOffset == 54 && quote.signedLength == 638)
        #expect(quote.mrTD == (try TDXQuote(v4)).mrTD)
        // The chain, the QE report and its binding verify; the quote signature (over other bytes) does not.
        #expect(failedCheck { _ = try verify(v5) } == .quoteSignature)
        // A v5 body type that is not a TD report, or a size that does not match its type.
        var bad = v5
        bad[48] = 1
        #expect(failedCheck { _ = try TDXQuote(bad) } == .format)
        bad = v5
        bad[50] = 0x49
        #expect(failedCheck { _ = try TDXQuote(bad) } == .format)
    }

    @Test("the collateral directory is read by name")
    func collateralDirectory() throws {
        let d = try Fixtures.collateralDir(Fixtures.tdxLinks)
        let c = try TDXCollateral.load(directory: d.path)
        let r = try AttestationVerifier.verify(try Fixtures.bytes(Fixtures.debugQuote), collateral: .tdx(c), policy: .inspection, at: Fixtures.tdxTime)
        #expect(r.verdict == .refused([.debug]))
        let empty = TempDir()
        #expect(throws: AttestationError.missingCollateral("\(empty.path)/tcb_info.json is missing")) { try TDXCollateral.load(directory: empty.path) }
    }
}
