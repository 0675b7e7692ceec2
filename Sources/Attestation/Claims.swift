// What verified evidence says, separate from whether a policy accepts it.
import Foundation

/// The kind of evidence.
public enum Platform: String, Sendable, Equatable {
    case tdx = "Intel TDX"
    case sevSNP = "AMD SEV-SNP"
    case simulated = "simulated"
}

/// Intel's TCB status values (PCS TCB info / QE identity), ordered from best to worst, plus
/// `notSupported` when no TCB level matches and `notApplicable` for SEV-SNP and simulated
/// evidence, which carry raw TCB versions instead (see `Claims.tcb`).
public enum TCBStatus: String, Sendable, Comparable, CaseIterable {
    case upToDate = "UpToDate"
    case swHardeningNeeded = "SWHardeningNeeded"
    case configurationNeeded = "ConfigurationNeeded"
    case configurationAndSWHardeningNeeded = "ConfigurationAndSWHardeningNeeded"
    case outOfDate = "OutOfDate"
    case outOfDateConfigurationNeeded = "OutOfDateConfigurationNeeded"
    case revoked = "Revoked"
    case notSupported = "NotSupported"
    case notApplicable = "NotApplicable"

    var rank: Int { TCBStatus.allCases.firstIndex(of: self)! }
    public static func < (a: TCBStatus, b: TCBStatus) -> Bool { a.rank < b.rank }
}

/// The claims of cryptographically verified evidence.
public struct Claims: Sendable, Equatable {
    public var platform: Platform
    /// True when the evidence (or anything it depends on) is simulated: no hardware vouches for it.
    public var simulated: Bool
    /// TDX MRTD, SNP MEASUREMENT, or the simulated report's measurement (48 bytes).
    public var measurement: [UInt8]
    /// TDX RTMR0-3 (48 bytes each); empty otherwise.
    public var rtmrs: [[UInt8]] = []
    /// TDX MRCONFIGID (48 bytes); nil otherwise.
    public var mrConfigID: [UInt8]?
    /// SNP HOST_DATA (32 bytes); nil otherwise.
    public var hostData: [UInt8]?
    /// TDX REPORTDATA / SNP REPORT_DATA / simulated report data (64 bytes).
    public var reportData: [UInt8]
    /// TDX TD attributes (8 bytes, little-endian as in the quote); nil otherwise.
    public var tdAttributes: [UInt8]?
    /// SNP guest POLICY; nil otherwise.
    public var snpPolicy: UInt64?
    /// SNP VMPL; nil otherwise.
    public var vmpl: UInt32?
    /// The guest can be debugged (TDX ATTRIBUTES.DEBUG, SNP POLICY.DEBUG): its memory is not confidential.
    public var debug: Bool
    /// The overall TCB status (TDX: the worst of the platform level, the QE level and the TDX module level).
    public var tcbStatus: TCBStatus
    /// The raw TCB version: TDX TEE_TCB_SVN (hex), SNP REPORTED_TCB (hex, little-endian u64).
    public var tcb: String
    /// Security advisories listed for the matched TCB levels (TDX).
    public var advisoryIDs: [String] = []
    /// Whether CRLs were checked for every certificate that has an issuer-published CRL.
    public var revocationChecked: Bool
    /// The earliest nextUpdate of the TDX TCB info and QE identity; nil for SEV-SNP and simulated evidence.
    public var collateralNextUpdate: Date?
}

/// The outcome of checking claims against a policy: accepted, or the checks that failed.
public enum Verdict: Sendable, Equatable {
    case accepted
    /// The policy checks that failed, in the order the policy evaluates them.
    case refused([PolicyViolation])

    public var isAccepted: Bool { self == .accepted }
}

/// A policy rule that claims did not meet.
public enum PolicyViolation: Sendable, Equatable, CustomStringConvertible {
    /// Simulated evidence, and the policy does not allow it.
    case simulated
    /// A debuggable guest, and the policy does not allow it.
    case debug
    /// The measurement is not on the allow-list.
    case measurement
    /// REPORTDATA differs from the expected value (the binding to the ephemeral key).
    case reportData
    /// The TCB status is not an accepted one.
    case tcbStatus(TCBStatus)
    /// The SNP TCB version is below the policy's minimum.
    case minimumTCB
    /// Revocation could not be checked (no CRLs in the collateral) and the policy requires it.
    case revocationNotChecked
    /// The SNP VMPL is above the policy's maximum.
    case vmpl(UInt32)
    /// No measurement allow-list, and the policy does not say any measurement will do.
    case measurementNotPinned
    /// No expected report data, and the policy does not say any will do.
    case reportDataNotPinned
    /// SEV-SNP evidence with no minimum TCB, and the policy does not say any TCB will do.
    case snpTCBFloorNotSet

    public var description: String {
        switch self {
        case .simulated: return "simulated evidence is not allowed"
        case .debug: return "the guest is debuggable (debug attribute/policy bit set)"
        case .measurement: return "measurement not on the allow-list"
        case .reportData: return "report data differs from the expected value"
        case .tcbStatus(let s): return "TCB status \(s.rawValue) is not accepted"
        case .minimumTCB: return "TCB version below the policy minimum"
        case .revocationNotChecked: return "revocation not checked (no CRLs in the collateral)"
        case .vmpl(let v): return "VMPL \(v) above the allowed maximum"
        case .measurementNotPinned: return "no measurement allow-list (pass --measurement HEX; --any-measurement to accept any)"
        case .reportDataNotPinned: return "no expected report data (pass --report-data HEX; --any-report-data to accept any)"
        case .snpTCBFloorNotSet: return "no minimum SEV-SNP TCB (pass --min-snp-tcb; --any-snp-tcb to accept any)"
        }
    }
}

/// What a relying party accepts. Separate from cryptographic verification, so that
/// "verifies, but refused by policy" is a result of its own.
public struct Policy: Sendable {
    /// Measurements (MRTD / MEASUREMENT) accepted. Empty refuses everything unless
    /// `allowAnyMeasurement`: an unpinned image proves nothing.
    public var allowedMeasurements: [[UInt8]] = []
    /// Accept any measurement (inspection only).
    public var allowAnyMeasurement = false
    /// The REPORTDATA the guest must have bound (e.g. the hash of its ephemeral key). nil
    /// refuses everything unless `allowAnyReportData`: unbound evidence can be replayed.
    public var expectedReportData: [UInt8]?
    /// Accept any report data (inspection only).
    public var allowAnyReportData = false
    /// Accept SEV-SNP evidence at any TCB when `minimumSNPTCB` is nil (inspection only).
    public var allowAnySNPTCB = false
    /// TCB statuses accepted (TDX). `notApplicable` is always accepted (SNP, simulated).
    public var acceptedTCBStatuses: Set<TCBStatus> = [.upToDate]
    /// SNP: the minimum REPORTED_TCB per component (bootloader, tee, snp, microcode); nil: any.
    public var minimumSNPTCB: SNPTCB?
    /// Debuggable guests are refused unless this is set.
    public var allowDebug = false
    /// Simulated evidence is refused unless this is set.
    public var allowSimulated = false
    /// Refuse when the collateral had no CRLs to check.
    public var requireRevocationCheck = true
    /// SNP: the highest VMPL accepted (0 is the most privileged level, where the guest kernel runs).
    public var maximumVMPL: UInt32 = 0

    /// The default policy: no debug, no simulated evidence, UpToDate TCB, CRLs checked, and
    /// nothing accepted until the measurement, the report data and (SEV-SNP) a minimum TCB are
    /// pinned or explicitly waived.
    public init() {}

    /// Waives the three pins, for looking at evidence rather than trusting it.
    public static var inspection: Policy {
        var p = Policy()
        p.allowAnyMeasurement = true; p.allowAnyReportData = true; p.allowAnySNPTCB = true
        return p
    }

    /// Evaluates every rule, in a fixed order, and returns all that fail.
    public func evaluate(_ c: Claims) -> Verdict {
        var v: [PolicyViolation] = []
        if c.simulated && !allowSimulated { v.append(.simulated) }
        if c.debug && !allowDebug { v.append(.debug) }
        if allowedMeasurements.isEmpty {
            if !allowAnyMeasurement { v.append(.measurementNotPinned) }
        } else if !allowedMeasurements.contains(c.measurement) { v.append(.measurement) }
        if let e = expectedReportData {
            if e != c.reportData { v.append(.reportData) }
        } else if !allowAnyReportData { v.append(.reportDataNotPinned) }
        if c.platform == .sevSNP && minimumSNPTCB == nil && !allowAnySNPTCB { v.append(.snpTCBFloorNotSet) }
        if c.tcbStatus != .notApplicable && !acceptedTCBStatuses.contains(c.tcbStatus) { v.append(.tcbStatus(c.tcbStatus)) }
        if let min = minimumSNPTCB, c.platform == .sevSNP, let t = SNPTCB(claim: c.tcb), !t.meets(min) { v.append(.minimumTCB) }
        if requireRevocationCheck && !c.revocationChecked && !c.simulated { v.append(.revocationNotChecked) }
        if let vmpl = c.vmpl, vmpl > maximumVMPL { v.append(.vmpl(vmpl)) }
        return v.isEmpty ? .accepted : .refused(v)
    }
}

/// The result of verification: the claims and the policy's verdict on them.
public struct AttestationResult: Sendable, Equatable {
    public let claims: Claims
    public let verdict: Verdict
}
