// The real evidence in ../shared/testdata/attestation (never copied into the repo), and
// collateral directories made of symlinks to it under the names the verifier reads.
import Attestation
import Foundation
import TestSupport

enum Fixtures {
    static let dir = Repo.shared + "/testdata/attestation"
    static func bytes(_ name: String) throws -> [UInt8] { try readFile(dir + "/" + name) }

    /// Inside every TDX collateral window: TCB info 2023-06-18..07-18, QE identity and PCK CRL
    /// 2023-06-08..07-08, root CRL 2023-04-03..2024-04-02, PCK certificates, TCB signing cert (2018-2025).
    static let tdxTime = Date(timeIntervalSince1970: 1_687_219_200)  // 2023-06-20T00:00:00Z
    /// Inside the VCEKs' (2022-09/2023-01 .. 2029/2030) and ASK/ARK validity.
    static let snpTime = Date(timeIntervalSince1970: 1_704_067_200)  // 2024-01-01T00:00:00Z
    /// Inside the trustee TCB info / QE identity windows (2025-10-28..11-26), signed by the 2025 TCB signing cert.
    static let trusteeTime = Date(timeIntervalSince1970: 1_762_000_000)  // 2025-11-01T12:26:40Z

    /// A temp directory holding symlinks `name -> testdata/target`.
    static func collateralDir(_ links: [String: String]) throws -> TempDir {
        let d = TempDir("cce4-collateral")
        for (name, target) in links {
            try FileManager.default.createSymbolicLink(atPath: d.sub(name), withDestinationPath: dir + "/" + target)
        }
        return d
    }

    static let tdxLinks = ["tcb_info.json": "tdx/sample_tcbInfo_response", "qe_identity.json": "tdx/sample_qeIdentity_response",
                           "pck_crl.der": "tdx/pckcrl", "root_crl.der": "tdx/rootcrl.der"]

    static func tdxCollateral() throws -> TDXCollateral {
        TDXCollateral(tcbInfo: try bytes("tdx/sample_tcbInfo_response"), qeIdentity: try bytes("tdx/sample_qeIdentity_response"),
                      pckCRL: try bytes("tdx/pckcrl"), rootCRL: try bytes("tdx/rootcrl.der"))
    }

    static func snpCollateral(vcek: String = "snp/trustee_test-vcek.der", chain: String = "snp/ask_ark_milan.pem") throws -> SNPCollateral {
        SNPCollateral(endorsementKey: try bytes(vcek), certChain: try bytes(chain))
    }

    static let prodQuote = "tdx/tdx_prod_quote_SPR_E4.dat"
    static let debugQuote = "tdx/trustee_tdx_quote_4_debug.dat"
    static let snpReport = "snp/trustee_test-report.bin"
    static let snpDebugReport = "snp/go-sev-guest_attestation_debug.bin"

    /// No AMD CRL is among the test evidence, so SNP tests say so in their policy.
    static var snpPolicy: Policy { var p = Policy.inspection; p.requireRevocationCheck = false; return p }
}

/// Runs `body` and returns the check it failed at (nil if it did not throw an AttestationError.failed).
func failedCheck(_ body: () throws -> Void) -> Check? {
    do {
        try body()
        return nil
    } catch let e as AttestationError {
        return e.check
    } catch {
        return nil
    }
}

/// PEM encoding of DER certificates (64-column base64).
func pem(_ ders: [[UInt8]]) -> [UInt8] {
    var s = ""
    for d in ders {
        s += "-----BEGIN CERTIFICATE-----\n"
        let b = Data(d).base64EncodedString()
        var i = b.startIndex
        while i < b.endIndex {
            let j = b.index(i, offsetBy: 64, limitedBy: b.endIndex) ?? b.endIndex
            s += b[i..<j] + "\n"
            i = j
        }
        s += "-----END CERTIFICATE-----\n"
    }
    return Array(s.utf8)
}

func pemBlocks(_ bytes: [UInt8]) -> [[UInt8]] {
    let text = String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    var out: [[UInt8]] = []
    for part in text.components(separatedBy: "-----BEGIN CERTIFICATE-----").dropFirst() {
        let body = part.components(separatedBy: "-----END CERTIFICATE-----")[0].filter { !$0.isWhitespace }
        out.append(Array(Data(base64Encoded: body)!))
    }
    return out
}

/// Distinct positions in `range`: all of them when few, else `count` from a seeded generator.
func positions(_ range: Range<Int>, count: Int, seed: UInt64) -> [Int] {
    if range.count <= count { return Array(range) }
    var rng = SeededGenerator(seed: seed)
    var set = Set<Int>()
    while set.count < count { set.insert(Int.random(in: range, using: &rng)) }
    return set.sorted()
}
