// The one error type of key release, on both sides: a closed code, the HTTP status the plane
// answers with, and a reason a human can act on. It travels as RFC 9457 problem+json.
import Foundation

/// Why a key release, a renewal or an access-log submission failed.
public struct KeyReleaseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, stable across versions (the `code` member of the problem document).
    public enum Code: String, Sendable, CaseIterable, Codable {
        // Requests the plane cannot parse or that name nothing.
        case malformed = "malformed"
        // The challenge: not ours, or stale. (Not recorded on the ledger: unauthenticated noise.)
        case challengeInvalid = "challenge-invalid"
        case challengeExpired = "challenge-expired"
        // The evidence.
        case evidenceInvalid = "evidence-invalid"
        case simulatedNotAllowed = "simulated-not-allowed"
        case debugRefused = "debug-refused"
        case measurementNotAllowed = "measurement-not-allowed"
        case policyRefused = "policy-refused"
        case bindingMismatch = "binding-mismatch"
        // The Job Credential.
        case credentialInvalid = "credential-invalid"
        case credentialSignature = "credential-signature"
        case credentialExpired = "credential-expired"
        case credentialMismatch = "credential-mismatch"
        // The ledger.
        case unknownVersion = "unknown-version"
        case noRental = "no-rental"
        case replayed = "replayed"
        case ledgerUnavailable = "ledger-unavailable"
        // The plane's own failures.
        case keyUnavailable = "key-unavailable"
        case internalFailure = "internal"
        // Leases.
        case leaseInvalid = "lease-invalid"
        case leaseExpired = "lease-expired"
        // Client side only: what the client detects in the plane's answer.
        case tamperedKey = "tampered-key"
        case planeIdentity = "plane-identity"
        case transport = "transport"
    }

    public let code: Code
    /// The HTTP status the plane answers with (the client keeps the one it received).
    public let status: Int
    /// One line a human can act on. Never holds a key, plaintext or a decrypted name.
    public let reason: String

    public init(_ code: Code, status: Int? = nil, _ reason: String) {
        self.code = code
        self.status = status ?? Self.defaultStatus(code)
        self.reason = reason
    }

    public var description: String { "\(reason) [\(code.rawValue), HTTP \(status)]" }

    /// 400 unparsable; 401 a challenge that is not ours or stale; 403 a refusal on the merits;
    /// 404 a dataset version the ledger does not know; 409 a replay; 500/503 the plane's own trouble.
    public static func defaultStatus(_ c: Code) -> Int {
        switch c {
        case .malformed: return 400
        case .challengeInvalid, .challengeExpired: return 401
        case .unknownVersion: return 404
        case .replayed: return 409
        case .ledgerUnavailable: return 503
        case .keyUnavailable, .internalFailure: return 500
        case .transport, .tamperedKey, .planeIdentity: return 502
        default: return 403
        }
    }

    static func malformed(_ r: String) -> KeyReleaseError { KeyReleaseError(.malformed, r) }
    static func internalFailure(_ r: String) -> KeyReleaseError { KeyReleaseError(.internalFailure, r) }
    static func tamperedKey(_ r: String) -> KeyReleaseError { KeyReleaseError(.tamperedKey, r) }

    /// The RFC 9457 problem document the plane sends.
    public var problem: Problem {
        Problem(type: "https://cce4long.dev/problems/key-release/\(code.rawValue)", title: Self.title(code), status: status, detail: reason, code: code.rawValue)
    }

    static func title(_ c: Code) -> String {
        switch c {
        case .malformed: return "Malformed request"
        case .challengeInvalid, .challengeExpired: return "Challenge not accepted"
        case .evidenceInvalid, .simulatedNotAllowed, .debugRefused, .measurementNotAllowed, .policyRefused, .bindingMismatch: return "Attestation refused"
        case .credentialInvalid, .credentialSignature, .credentialExpired, .credentialMismatch: return "Job credential refused"
        case .unknownVersion: return "Unknown dataset version"
        case .noRental: return "No active rental"
        case .replayed: return "Session already used"
        case .ledgerUnavailable: return "Ledger unavailable"
        case .keyUnavailable, .internalFailure: return "Internal error"
        case .leaseInvalid, .leaseExpired: return "Lease refused"
        case .tamperedKey, .planeIdentity, .transport: return "Bad answer from the plane"
        }
    }
}

/// RFC 9457 problem details, with the key-release `code` extension member.
public struct Problem: Codable, Sendable, Equatable {
    public var type: String
    public var title: String
    public var status: Int
    public var detail: String
    public var code: String?
}
