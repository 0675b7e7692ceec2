// Flip bytes in every signed region, every signature and every certificate of the real
// samples, and check verification fails at the right check. Bounded: every byte of the small
// regions, a seeded sample of the large ones. Plus truncation, oversize and a seeded fuzzer.
@testable import Attestation
import Envelope
import Foundation
import TestSupport
import Testing

/// Logs what was mutated (the counts appear in the test output).
enum Tally { static func add(_ k: String) { print("mutations: " + k) } }

@Suite("Mutations and fuzzing")
struct MutationTests {

    /// Flips bit pattern 0x01 << (i % 8) at each position; expects `check` (or one of `alsoOK` at `alsoAt`).
    func flips(_ label: String, _ base: [UInt8], _ at: [Int], expect check: Check, alsoOK: Set<Check> = [], alsoAt: Set<Int> = [],
               _ verify: ([UInt8]) throws -> Void) {
        for i in at {
            var m = base
            m[i] ^= UInt8(1) << UInt8(i % 8)
            let got = failedCheck { try verify(m) }
            if got == check || (alsoAt.contains(i) && got.map { alsoOK.contains($0) } == true) { continue }
            Issue.record("\(label): flipping byte \(i) gave \(got.map { "\($0)" } ?? "no failure"), expected \(check)")
            return
        }
        Tally.add(label + " ×\(at.count)")
    }

    @Test("TDX: signed region, quote signature, attestation key, QE report, its signature, auth data, certificates")
    func tdx() throws {
        let col = try Fixtures.tdxCollateral()
        for name in [Fixtures.prodQuote, Fixtures.debugQuote] {
            let q = try Fixtures.bytes(name)
            let quote = try TDXQuote(q)
            let verify = { (b: [UInt8]) throws(AttestationError) in
                _ = try AttestationVerifier.verify(b, collateral: .tdx(col), policy: .inspection, at: Fixtures.tdxTime)
            }
            // Version and key type decide the layout, so flipping them is a format error.
            flips("\(name) signed [0,\(quote.signedLength))", q, Array(0..<quote.signedLength), expect: .quoteSignature,
                  alsoOK: [.format], alsoAt: Set(0..<4), verify)
            flips("\(name) quote signature", q, Array(quote.signature), expect: .quoteSignature, verify)
            flips("\(name) attestation key", q, Array(quote.attestationKey), expect: .qeReportBinding, verify)
            flips("\(name) QE report", q, Array(quote.qeReport), expect: .qeReportSignature, verify)
            flips("\(name) QE report signature", q, Array(quote.qeReportSignature), expect: .qeReportSignature, verify)
            flips("\(name) QE auth data", q, Array(quote.qeAuthData), expect: .qeReportBinding, verify)
            // Each certificate's DER, re-encoded into the quote's PEM (same length).
            let ders = pemBlocks(Array(q[quote.pckChain]))
            #expect(ders.count == 3)
            for (n, der) in ders.enumerated() {
                for i in positions(0..<der.count, count: 300, seed: UInt64(n + 1)) {
                    var d = ders
                    d[n][i] ^= 0x10
                    var chain = pem(d)
                    chain += [UInt8](repeating: 0, count: max(0, quote.pckChain.count - chain.count))
                    guard chain.count == quote.pckChain.count else { Issue.record("PEM length changed"); return }
                    var m = q
                    m.replaceSubrange(quote.pckChain, with: chain)
                    let got = failedCheck { try verify(m) }
                    if got != .certificateChain { Issue.record("\(name) certificate \(n) byte \(i): \(String(describing: got))"); return }
                }
                Tally.add("\(name) certificate \(n) DER ×\(min(300, der.count))")
            }
        }
    }

    @Test("TDX collateral: TCB info and QE identity bodies and signatures")
    func tdxCollateral() throws {
        let q = try Fixtures.bytes(Fixtures.debugQuote)
        let base = try Fixtures.tdxCollateral()
        for (key, file, check) in [("tcbInfo", "tdx/sample_tcbInfo_response", Check.tcbInfoSignature),
                                   ("enclaveIdentity", "tdx/sample_qeIdentity_response", Check.qeIdentitySignature)] {
            let doc = try Fixtures.bytes(file)
            let span = TopLevelSpans(doc)!.values[key]!
            let verify = { (b: [UInt8]) throws(AttestationError) in
                var c = base
                if key == "tcbInfo" { c.tcbInfo = b } else { c.qeIdentity = b }
                _ = try AttestationVerifier.verify(q, collateral: .tdx(c), policy: .inspection, at: Fixtures.tdxTime)
            }
            // JSON punctuation flips can break the document's structure: a collateral format error.
            // (before or after the flip).
            let punctuation = Array("{}[]\":,\\".utf8)
            let structural = Set(span.filter { punctuation.contains(doc[$0]) || punctuation.contains(doc[$0] ^ (UInt8(1) << UInt8($0 % 8))) })
            flips("\(file) signed body", doc, positions(span, count: 400, seed: 7), expect: check,
                  alsoOK: [.collateral], alsoAt: structural, verify)
            // The signature: flip its bytes and re-encode as hex.
            let sigSpan = TopLevelSpans(doc)!.values["signature"]!
            let sig = Hex.decode(String(decoding: doc[(sigSpan.lowerBound + 1)..<(sigSpan.upperBound - 1)], as: UTF8.self))!
            for i in 0..<64 {
                var s = sig
                s[i] ^= 0x04
                var m = doc
                m.replaceSubrange((sigSpan.lowerBound + 1)..<(sigSpan.upperBound - 1), with: Array(Hex.encode(s).utf8))
                let got = failedCheck { try verify(m) }
                if got != check { Issue.record("\(file) signature byte \(i): \(String(describing: got))"); return }
            }
            Tally.add("\(file) signature ×64")
        }
    }

    @Test("TDX CRLs: a flipped byte in the PCK CRL or the root CRL fails revocation (or does not parse)")
    func crls() throws {
        let q = try Fixtures.bytes(Fixtures.prodQuote)
        let base = try Fixtures.tdxCollateral()
        for (which, crl) in [("pck_crl", base.pckCRL!), ("root_crl", base.rootCRL!)] {
            var unparsable = 0
            for i in positions(0..<crl.count, count: 300, seed: 21) {
                var m = crl
                m[i] ^= UInt8(1) << UInt8(i % 8)
                var c = base
                if which == "pck_crl" { c.pckCRL = m } else { c.rootCRL = m }
                let got = failedCheck { _ = try AttestationVerifier.verify(q, collateral: .tdx(c), policy: .inspection, at: Fixtures.tdxTime) }
                if got == .collateral { unparsable += 1; continue }
                if got != .revocation { Issue.record("\(which) byte \(i): \(String(describing: got))"); return }
            }
            Tally.add("\(which) DER ×\(min(300, crl.count)) (\(unparsable) no longer parse)")
        }
    }

    @Test("SEV-SNP: signed region, signature, VCEK, ASK and ARK")
    func snp() throws {
        for (report, vcek) in [(Fixtures.snpReport, "snp/trustee_test-vcek.der"), (Fixtures.snpDebugReport, "snp/go-sev-guest_vcek.testcer")] {
            let b = try Fixtures.bytes(report)
            let col = try Fixtures.snpCollateral(vcek: vcek)
            let verify = { (m: [UInt8]) throws(AttestationError) in
                _ = try AttestationVerifier.verify(m, collateral: .snp(col), policy: Fixtures.snpPolicy, at: Fixtures.snpTime)
            }
            flips("\(report) signed [0,0x2A0)", b, Array(0..<0x2A0), expect: .reportSignature, verify)
            flips("\(report) signature r,s", b, Array(0x2A0..<0x330), expect: .reportSignature, verify)
            let vcekDER = col.endorsementKey
            flips("\(vcek) DER", vcekDER, positions(0..<vcekDER.count, count: 300, seed: 3), expect: .certificateChain) { (m: [UInt8]) throws(AttestationError) in
                var c = col
                c.endorsementKey = m
                _ = try AttestationVerifier.verify(b, collateral: .snp(c), policy: Fixtures.snpPolicy, at: Fixtures.snpTime)
            }
        }
        let b = try Fixtures.bytes(Fixtures.snpReport)
        let col = try Fixtures.snpCollateral()
        let ders = pemBlocks(col.certChain)
        for n in 0..<2 {
            for i in positions(0..<ders[n].count, count: 300, seed: UInt64(10 + n)) {
                var d = ders
                d[n][i] ^= 0x20
                var c = col
                c.certChain = pem(d)
                let got = failedCheck { _ = try AttestationVerifier.verify(b, collateral: .snp(c), policy: Fixtures.snpPolicy, at: Fixtures.snpTime) }
                if got != .certificateChain { Issue.record("\(n == 0 ? "ASK" : "ARK") byte \(i): \(String(describing: got))"); return }
            }
            Tally.add("\(n == 0 ? "ASK" : "ARK") DER ×300")
        }
    }

    @Test("simulated: signed region and signature")
    func simulated() throws {
        let key = try SimulatedKey()
        let e = try SimulatedProvider(key: key, measurement: [UInt8](repeating: 7, count: 48)).evidence(reportData: [UInt8](repeating: 1, count: 64))
        var p = Policy.inspection
        p.allowSimulated = true
        let verify = { (m: [UInt8]) throws(AttestationError) in _ = try AttestationVerifier.verify(m, collateral: .none, policy: p, at: Date()) }
        flips("simulated signed [0,184)", e.outblob, Array(0..<184), expect: .reportSignature, alsoOK: [.format], alsoAt: Set(0..<8), verify)
        flips("simulated signature", e.outblob, Array(184..<248), expect: .reportSignature, verify)
    }

    @Test("truncated and oversized evidence is an error, never a crash")
    func truncatedAndOversized() throws {
        let col = try Fixtures.tdxCollateral()
        let q = try Fixtures.bytes(Fixtures.prodQuote)
        let end = try TDXQuote(q).pckChain.upperBound  // the 39 bytes after it are unsigned padding
        var n = 0
        for len in 0..<end {
            let got = failedCheck { _ = try AttestationVerifier.verify(Array(q[0..<len]), collateral: .tdx(col), policy: .inspection, at: Fixtures.tdxTime) }
            if got == nil { Issue.record("TDX prefix of \(len) bytes verified"); break }
            n += 1
        }
        let snp = try Fixtures.bytes(Fixtures.snpReport)
        let sc = try Fixtures.snpCollateral()
        for len in [0, 1, 0x2A0, 0x49F, 0x4A1, 0x4A0 + 4096] {
            let m = len <= snp.count ? Array(snp[0..<len]) : snp + [UInt8](repeating: 0, count: len - snp.count)
            #expect(failedCheck { _ = try AttestationVerifier.verify(m, collateral: .snp(sc), policy: Fixtures.snpPolicy, at: Fixtures.snpTime) } == .format, "\(len)")
        }
        #expect(failedCheck { _ = try AttestationVerifier.verify(q + [UInt8](repeating: 0, count: 70_000), collateral: .tdx(col), policy: .inspection, at: Fixtures.tdxTime) } == .format)
        #expect(failedCheck { _ = try TDXQuote([UInt8](repeating: 0xff, count: 5000)) } == .format)
        Tally.add("TDX truncations ×\(n)")
    }

    @Test("seeded fuzzing of the parsers and verifiers (bounded)")
    func fuzz() throws {
        var rng = SeededGenerator(seed: 0xCCE4)
        let tdx = try Fixtures.tdxCollateral(), snp = try Fixtures.snpCollateral()
        let samples = [try Fixtures.bytes(Fixtures.prodQuote), try Fixtures.bytes(Fixtures.debugQuote), try Fixtures.bytes(Fixtures.snpReport)]
        let iterations = 1500
        for it in 0..<iterations {
            var m = samples[it % samples.count]
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                switch Int.random(in: 0..<5, using: &rng) {
                case 0: let i = Int.random(in: 0..<m.count, using: &rng); m[i] = UInt8.random(in: 0...255, using: &rng)
                case 1: m.removeLast(Int.random(in: 0...min(m.count, 600), using: &rng))
                case 2: m.insert(contentsOf: rng.bytes(Int.random(in: 1...64, using: &rng)), at: Int.random(in: 0...m.count, using: &rng))
                case 3:  // a length field set to something large (offsets of the v4 lengths)
                    for o in [632, 764, 1218, 1252] where o + 4 <= m.count { if Bool.random(using: &rng) { m[o + 1] = 0xff } }
                default: if !m.isEmpty { m.remove(at: Int.random(in: 0..<m.count, using: &rng)) }
                }
                if m.isEmpty { break }
            }
            let col: CollateralSource = AttestationVerifier.detect(m) == .sevSNP ? .snp(snp) : .tdx(tdx)
            _ = failedCheck { _ = try AttestationVerifier.verify(m, collateral: col, policy: .inspection, at: Fixtures.tdxTime) }
        }
        // Random bytes through the JSON span scanner, the DER reader and the PEM splitter.
        for _ in 0..<3000 {
            let junk = rng.bytes(Int.random(in: 0...200, using: &rng))
            _ = TopLevelSpans(junk)
            _ = DER.read(junk[...])?.0.children
            _ = PEM.blocks(junk, label: "CERTIFICATE")
        }
        Tally.add("fuzz ×\(iterations) evidence, ×3000 junk")
    }
}
