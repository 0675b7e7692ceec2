// The entry point: recognise the evidence, verify it with its collateral, apply the policy.
import Envelope
import Foundation

/// Where a verifier's collateral comes from.
public enum CollateralSource: Sendable {
    case tdx(TDXCollateral)
    case snp(SNPCollateral)
    /// Simulated evidence needs none; an optional pinned public key (X ‖ Y).
    case simulated(pinnedKey: [UInt8]?)
    /// None given.
    case none
}

public enum AttestationVerifier {
    /// The largest evidence accepted.
    public static let maximumSize = TDXQuote.maximumSize

    /// The platform the bytes claim to be (by magic, size and header); nil if none.
    public static func detect(_ bytes: [UInt8]) -> Platform? {
        if bytes.count == SimulatedReport.size, Array(bytes.prefix(8)) == SimulatedReport.magic { return .simulated }
        if bytes.count == SNPReport.size { return .sevSNP }
        // Version 4 or 5 and ECDSA-256 key type; the TEE type is checked after the signature.
        if bytes.count >= 8, bytes[0] == 4 || bytes[0] == 5, bytes[1] == 0, bytes[2] == 2, bytes[3] == 0 { return .tdx }
        return nil
    }

    /// Verifies `bytes` cryptographically with the collateral as of `time` (throws the first
    /// failed check), then evaluates `policy` on the claims.
    public static func verify(_ bytes: [UInt8], collateral: CollateralSource, policy: Policy, at time: Date) throws(AttestationError) -> AttestationResult {
        guard bytes.count <= maximumSize else { throw .format("evidence larger than \(maximumSize) bytes") }
        guard let platform = detect(bytes) else { throw .format("not a TDX quote, an SEV-SNP report or a simulated report (\(bytes.count) bytes)") }
        let claims: Claims
        switch (platform, collateral) {
        case (.tdx, .tdx(let c)): claims = try TDXVerifier.verify(try TDXQuote(bytes), collateral: c, at: time)
        case (.sevSNP, .snp(let c)): claims = try SNPVerifier.verify(try SNPReport(bytes), collateral: c, at: time)
        case (.simulated, .simulated(let key)): claims = try SimulatedVerifier.verify(try SimulatedReport(bytes), pinnedKey: key)
        case (.simulated, .none): claims = try SimulatedVerifier.verify(try SimulatedReport(bytes))
        default: throw .collateral("\(platform.rawValue) evidence needs \(platform == .tdx ? "Intel PCS" : "AMD KDS") collateral")
        }
        return AttestationResult(claims: claims, verdict: policy.evaluate(claims))
    }

    /// Loads the collateral in `directory` that suits `bytes` (see TDXCollateral/SNPCollateral.load).
    public static func collateral(for bytes: [UInt8], directory: String?) throws(AttestationError) -> CollateralSource {
        switch detect(bytes) {
        case .tdx?:
            guard let directory else { throw .missingCollateral("TDX evidence needs Intel PCS collateral" + fetchHint(bytes)) }
            do throws(AttestationError) {
                return .tdx(try TDXCollateral.load(directory: directory))
            } catch {
                if case .missingCollateral(let d) = error { throw .missingCollateral(d + fetchHint(bytes)) }
                throw error
            }
        case .sevSNP?:
            guard let directory else { throw .missingCollateral("SEV-SNP evidence needs AMD KDS collateral" + fetchHint(bytes)) }
            do throws(AttestationError) {
                return .snp(try SNPCollateral.load(directory: directory))
            } catch {
                if case .missingCollateral(let d) = error { throw .missingCollateral(d + fetchHint(bytes)) }
                throw error
            }
        case .simulated?:
            var key: [UInt8]? = nil
            if let directory { key = try readOptional(directory, "simulated_key.pub") }
            return .simulated(pinnedKey: key)
        case nil:
            return .none
        }
    }

    /// Where to fetch the collateral for this evidence (docs/attestation.md §Collateral).
    public static func fetchHint(_ bytes: [UInt8]) -> String {
        switch detect(bytes) {
        case .tdx?:
            guard let q = try? TDXQuote(bytes), let chain = PEM.certificates(q.bytes[q.pckChain]), let ext = PCKExtension(chain[0]) else { return "" }
            return "; fetch tcb_info.json from https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=\(Hex.encode(ext.fmspc))"
                + " (see docs/attestation.md for the QE identity and the CRLs)"
        case .sevSNP?:
            guard let r = try? SNPReport(bytes) else { return "" }
            let t = SNPTCB(raw: r.reportedTCBRaw, turin: false)
            func two(_ v: UInt8) -> String { v < 10 ? "0\(v)" : "\(v)" }
            return "; for a Milan or Genoa chip, fetch vcek.der from https://kdsintf.amd.com/vcek/v1/{Milan|Genoa}/\(Hex.encode(r.chipID))"
                + "?blSPL=\(two(t.bootloader))&teeSPL=\(two(t.tee))&snpSPL=\(two(t.snp))&ucodeSPL=\(two(t.microcode))"
                + " and cert_chain.pem from https://kdsintf.amd.com/vcek/v1/{Milan|Genoa}/cert_chain (Turin: see docs/attestation.md)"
        default:
            return ""
        }
    }
}
