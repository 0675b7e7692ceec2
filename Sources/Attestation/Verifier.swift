// The entry point: recognise the evidence, verify it with its collateral, apply the policy.
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
            guard let directory else { throw .collateral("TDX evidence needs --collateral DIR (Intel PCS TCB info, QE identity, CRLs)") }
            return .tdx(try TDXCollateral.load(directory: directory))
        case .sevSNP?:
            guard let directory else { throw .collateral("SEV-SNP evidence needs --collateral DIR (VCEK, ASK/ARK)") }
            return .snp(try SNPCollateral.load(directory: directory))
        case .simulated?:
            var key: [UInt8]? = nil
            if let directory { key = try readOptional(directory, "simulated_key.pub") }
            return .simulated(pinnedKey: key)
        case nil:
            return .none
        }
    }
}
