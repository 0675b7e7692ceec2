// A policy as a JSON file, so a relying party keeps its allow-list beside its configuration
// (docs/attestation.md §Policy). Strict: an unknown key or a wrong type is an error, never ignored.
import Envelope
import Foundation

extension Policy {
    /// The keys a policy file may have.
    public static let fileKeys: Set<String> = [
        "measurements", "reportData", "acceptTCB", "minimumSNPTCB", "allowDebug", "allowSimulated",
        "requireRevocationCheck", "maximumVMPL", "anyMeasurement", "anyReportData", "anySNPTCB",
    ]

    /// Parses a policy file: a JSON object with any of `fileKeys`; absent keys keep the defaults.
    ///
    ///     {"measurements": ["<96 hex digits>", …], "reportData": "<128 hex digits>",
    ///      "acceptTCB": ["UpToDate", "SWHardeningNeeded"],
    ///      "minimumSNPTCB": {"bl": 3, "tee": 0, "snp": 8, "ucode": 115},
    ///      "allowDebug": false, "allowSimulated": false, "requireRevocationCheck": true, "maximumVMPL": 0}
    public init(json: [UInt8]) throws(AttestationError) {
        self.init()
        guard let o = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] else {
            throw .invalidArgument("a policy file is one JSON object")
        }
        if let unknown = Set(o.keys).subtracting(Policy.fileKeys).sorted().first {
            throw .invalidArgument("unknown policy key \"\(unknown)\" (known: \(Policy.fileKeys.sorted().joined(separator: ", ")))")
        }
        func hex(_ v: Any, _ count: Int, _ key: String) throws(AttestationError) -> [UInt8] {
            guard let s = v as? String, let b = Hex.decode(s), b.count == count else { throw .invalidArgument("\(key): \(2 * count) hex digits") }
            return b
        }
        func bool(_ key: String) throws(AttestationError) -> Bool? {
            guard let v = o[key] else { return nil }
            guard isJSONBool(v), let b = v as? Bool else { throw .invalidArgument("\(key): true or false") }
            return b
        }
        func int(_ v: Any?, _ key: String, max: Int) throws(AttestationError) -> Int {
            guard let v, !isJSONBool(v), let n = v as? NSNumber, let i = Int(exactly: n.doubleValue), (0...max).contains(i) else {
                throw .invalidArgument("\(key): an integer from 0 to \(max)")
            }
            return i
        }
        if let v = o["measurements"] {
            guard let list = v as? [Any] else { throw .invalidArgument("measurements: a list of hex strings") }
            var ms: [[UInt8]] = []
            for m in list { ms.append(try hex(m, 48, "measurements")) }
            allowedMeasurements = ms
        }
        if let v = o["reportData"] { expectedReportData = try hex(v, 64, "reportData") }
        if let v = o["acceptTCB"] {
            guard let list = v as? [String], !list.isEmpty else { throw .invalidArgument("acceptTCB: a non-empty list of TCB statuses") }
            var set = Set<TCBStatus>()
            for s in list {
                guard let t = TCBStatus(rawValue: s) else { throw .invalidArgument("acceptTCB: \(s) is not one of \(TCBStatus.allCases.map(\.rawValue).joined(separator: ", "))") }
                set.insert(t)
            }
            acceptedTCBStatuses = set
        }
        if let v = o["minimumSNPTCB"] {
            guard let m = v as? [String: Any], Set(m.keys).isSubset(of: ["bl", "tee", "snp", "ucode", "fmc"]) else {
                throw .invalidArgument("minimumSNPTCB: {\"bl\": N, \"tee\": N, \"snp\": N, \"ucode\": N}")
            }
            let fmc = m["fmc"] == nil ? nil : UInt8(try int(m["fmc"], "minimumSNPTCB.fmc", max: 255))
            minimumSNPTCB = SNPTCB(bootloader: UInt8(try int(m["bl"], "minimumSNPTCB.bl", max: 255)), tee: UInt8(try int(m["tee"], "minimumSNPTCB.tee", max: 255)),
                                   snp: UInt8(try int(m["snp"], "minimumSNPTCB.snp", max: 255)), microcode: UInt8(try int(m["ucode"], "minimumSNPTCB.ucode", max: 255)), fmc: fmc)
        }
        if let b = try bool("anyMeasurement") { allowAnyMeasurement = b }
        if let b = try bool("anyReportData") { allowAnyReportData = b }
        if let b = try bool("anySNPTCB") { allowAnySNPTCB = b }
        if let b = try bool("allowDebug") { allowDebug = b }
        if let b = try bool("allowSimulated") { allowSimulated = b }
        if let b = try bool("requireRevocationCheck") { requireRevocationCheck = b }
        if o["maximumVMPL"] != nil { maximumVMPL = UInt32(try int(o["maximumVMPL"], "maximumVMPL", max: 3)) }
    }
}

/// JSONSerialization returns true/false as NSNumbers that also read as 1/0; they are of the
/// boolean NSNumber subclass, which tells them apart (on Darwin and in swift-corelibs-foundation).
private func isJSONBool(_ v: Any) -> Bool {
    type(of: v) == type(of: NSNumber(value: true))
}
