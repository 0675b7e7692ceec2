// Simulated evidence, for machines without a TEE (development, CI). Nothing vouches for it:
// anyone can make a key and sign any measurement. Verifiers refuse it unless the policy
// allows simulated evidence, and then label the claims simulated.
//
// Format (docs/attestation.md §Simulated), 248 bytes:
//   0    8   magic "CCE4SIM1"
//   8    48  measurement
//   56   64  report data
//   120  64  public key X ‖ Y (P-256)
//   184  64  signature r ‖ s (big-endian), ECDSA P-256 / SHA-256 over bytes [0, 184)
internal import COpenSSL
import Envelope

public struct SimulatedReport: Sendable {
    public static let magic = Array("CCE4SIM1".utf8)
    public static let size = 248
    public static let signedLength = 184
    public let bytes: [UInt8]

    public init(_ bytes: [UInt8]) throws(AttestationError) {
        guard bytes.count == SimulatedReport.size else { throw .format("a simulated report is \(SimulatedReport.size) bytes, not \(bytes.count)") }
        guard Array(bytes[0..<8]) == SimulatedReport.magic else { throw .format("no CCE4SIM1 magic") }
        self.bytes = bytes
    }

    public var measurement: [UInt8] { Array(bytes[8..<56]) }
    public var reportData: [UInt8] { Array(bytes[56..<120]) }
    public var publicKey: [UInt8] { Array(bytes[120..<184]) }
}

/// A local P-256 key that signs simulated reports. The private scalar lives in SecureBytes.
public final class SimulatedKey: Sendable {
    let privateKey: SecureBytes
    /// X ‖ Y.
    public let publicKey: [UInt8]

    /// A fresh key (cce4_p256_generate).
    public init() throws(AttestationError) {
        var priv = [UInt8](repeating: 0, count: 32), pub = [UInt8](repeating: 0, count: 64)
        defer { secureWipe(&priv) }
        guard cce4_p256_generate(&priv, &pub) == 1 else { throw .provider("cannot generate a P-256 key") }
        guard let s = try? priv.withUnsafeBytes({ try SecureBytes(copying: $0) }) else { throw .provider("cannot allocate key memory") }
        privateKey = s
        publicKey = pub
    }

    /// A key from its 96-byte file form: scalar (32) ‖ X ‖ Y (64).
    public init(fileBytes: [UInt8]) throws(AttestationError) {
        guard fileBytes.count == 96 else { throw .invalidArgument("a simulated key file is 96 bytes") }
        guard let s = try? fileBytes.withUnsafeBytes({ try SecureBytes(copying: UnsafeRawBufferPointer(rebasing: $0[0..<32])) }) else {
            throw .provider("cannot allocate key memory")
        }
        privateKey = s
        publicKey = Array(fileBytes[32...])
    }

    /// scalar ‖ X ‖ Y; the caller wipes it (secureWipe) after writing it out.
    public func fileBytes() -> [UInt8] {
        privateKey.withUnsafeBytes { Array($0) } + publicKey
    }

    func sign(_ message: [UInt8]) throws(AttestationError) -> [UInt8] {
        var rs = [UInt8](repeating: 0, count: 64)
        let ok = privateKey.withUnsafeBytes { p in
            cce4_p256_sign(p.baseAddress!.assumingMemoryBound(to: UInt8.self), message, message.count, &rs)
        }
        guard ok == 1 else { throw .provider("cannot sign the simulated report") }
        return rs
    }
}

/// Produces simulated evidence: a report of the format above, signed by `key`.
public struct SimulatedProvider: EvidenceProvider {
    public let key: SimulatedKey
    public let measurement: [UInt8]

    public init(key: SimulatedKey, measurement: [UInt8]) throws(AttestationError) {
        guard measurement.count == 48 else { throw .invalidArgument("a measurement is 48 bytes") }
        self.key = key
        self.measurement = measurement
    }

    public func evidence(reportData: [UInt8]) throws(AttestationError) -> Evidence {
        guard reportData.count == 64 else { throw .invalidArgument("report data is exactly 64 bytes, not \(reportData.count)") }
        let body = SimulatedReport.magic + measurement + reportData + key.publicKey
        return Evidence(provider: "simulated", outblob: body + (try key.sign(body)), auxblob: [])
    }
}

public enum SimulatedVerifier {
    /// Checks the signature with the report's own key, or with `pinnedKey` when given.
    public static func verify(_ report: SimulatedReport, pinnedKey: [UInt8]? = nil) throws(AttestationError) -> Claims {
        let b = report.bytes
        guard verifyECDSA(point: b[120..<184], hashBits: 256, message: b[0..<SimulatedReport.signedLength], r: b[184..<216], s: b[216..<248]) else {
            throw .failed(.reportSignature, "the simulated report's signature does not verify")
        }
        if let pinnedKey, pinnedKey != report.publicKey {
            throw .failed(.endorsementKey, "the simulated report is signed by another key than the pinned one")
        }
        return Claims(platform: .simulated, simulated: true, measurement: report.measurement, reportData: report.reportData,
                      debug: false, tcbStatus: .notApplicable, tcb: "simulated", revocationChecked: false)
    }
}
