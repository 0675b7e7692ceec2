// The evidence providers: configfs-tsm's file protocol on a directory standing in for
// configfs (the emulator plays the kernel's part), and the simulated provider.
@testable import Attestation
import Foundation
import TestSupport
import Testing

/// Plays the kernel: on mkdir it populates the attributes, on an inblob write it "generates"
/// a report (outblob = "REPORT" ‖ inblob) and bumps generation, as configfs-tsm does.
final class FakeTSM: @unchecked Sendable {
    let lock = NSLock()
    var entries: [String] = []
    var inblobs: [[UInt8]] = []
    var provider = "tdx_guest"
    var emptyOutblob = false
    var raceOnRead = false

    func handle(_ event: ConfigfsTSMProvider.Event, _ entry: String) {
        lock.lock(); defer { lock.unlock() }
        let fm = FileManager.default
        switch event {
        case .created:
            entries.append(entry)
            try! writeFile(entry + "/generation", Array("0\n".utf8))
            try! writeFile(entry + "/provider", Array("\(provider)\n".utf8))
        case .wroteInblob:
            let inblob = try! readFile(entry + "/inblob")
            inblobs.append(inblob)
            try! writeFile(entry + "/outblob", emptyOutblob ? [] : Array("REPORT".utf8) + inblob)
            try! writeFile(entry + "/auxblob", Array("AUX".utf8))
            try! writeFile(entry + "/generation", Array("1\n".utf8))
        case .readOutblob:
            if raceOnRead { try! writeFile(entry + "/generation", Array("2\n".utf8)) }
        case .removing:
            for f in (try? fm.contentsOfDirectory(atPath: entry)) ?? [] { try? fm.removeItem(atPath: entry + "/" + f) }
        }
    }
}

@Suite("Evidence providers")
struct ProviderTests {
    @Test("configfs-tsm: a fresh entry per request, a 64-byte inblob, outblob and auxblob read back")
    func configfsProtocol() throws {
        let root = TempDir("cce4-tsm")
        let fake = FakeTSM()
        let p = ConfigfsTSMProvider(root: root.path, expectedProvider: "tdx_guest", emulator: { fake.handle($0, $1) })
        let data1 = [UInt8](repeating: 0xAB, count: 64), data2 = [UInt8](repeating: 0xCD, count: 64)
        let e1 = try p.evidence(reportData: data1)
        let e2 = try p.evidence(reportData: data2)
        #expect(e1.provider == "tdx_guest" && e1.outblob == Array("REPORT".utf8) + data1 && e1.auxblob == Array("AUX".utf8))
        #expect(e2.outblob == Array("REPORT".utf8) + data2)
        #expect(fake.inblobs == [data1, data2], "exactly the 64 bytes, once per request")
        #expect(fake.entries.count == 2 && Set(fake.entries).count == 2, "a fresh entry each time")
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path).isEmpty, "entries are removed afterwards")
        #expect(throws: AttestationError.self) { try p.evidence(reportData: [UInt8](repeating: 0, count: 63)) }
        #expect(fake.entries.count == 2, "a wrong length is refused before touching configfs")
    }

    @Test("configfs-tsm: an empty outblob, a moving generation, a wrong provider, a missing root are errors")
    func configfsErrors() throws {
        let root = TempDir("cce4-tsm")
        let data = [UInt8](repeating: 1, count: 64)
        func provider(_ configure: (FakeTSM) -> Void, expect: String? = "tdx_guest") -> ConfigfsTSMProvider {
            let fake = FakeTSM()
            configure(fake)
            return ConfigfsTSMProvider(root: root.path, expectedProvider: expect, emulator: { fake.handle($0, $1) })
        }
        func message(_ p: ConfigfsTSMProvider) -> String {
            do { _ = try p.evidence(reportData: data); return "no error" } catch { return "\(error)" }
        }
        #expect(message(provider { $0.emptyOutblob = true }).contains("empty outblob"))
        #expect(message(provider { $0.raceOnRead = true }).contains("generation moved"))
        #expect(message(provider { $0.provider = "sev_guest" }).contains("provider is sev_guest"))
        #expect(message(ConfigfsTSMProvider(root: root.sub("absent"))).contains("cannot create"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path).isEmpty)
    }

    @Test("simulated: round-trips, labelled simulated, refused by the default policy")
    func simulated() throws {
        let key = try SimulatedKey()
        let measurement = [UInt8](repeating: 0x42, count: 48), data = Array(0..<64).map { UInt8($0) }
        let e = try SimulatedProvider(key: key, measurement: measurement).evidence(reportData: data)
        #expect(e.outblob.count == 248 && AttestationVerifier.detect(e.outblob) == .simulated)
        let refused = try AttestationVerifier.verify(e.outblob, collateral: .none, policy: .inspection, at: Date())
        // The default policy refuses it on every count: simulated, and nothing pinned.
        let byDefault = try AttestationVerifier.verify(e.outblob, collateral: .none, policy: Policy(), at: Date())
        #expect(byDefault.verdict == .refused([.simulated, .measurementNotPinned, .reportDataNotPinned]))
        #expect(refused.claims.simulated && refused.claims.measurement == measurement && refused.claims.reportData == data)
        #expect(refused.verdict == .refused([.simulated]))
        var p = Policy.inspection
        p.allowSimulated = true
        p.allowedMeasurements = [measurement]
        p.expectedReportData = data
        let ok = try AttestationVerifier.verify(e.outblob, collateral: .simulated(pinnedKey: key.publicKey), policy: p, at: Date())
        #expect(ok.verdict == .accepted && ok.claims.simulated && ok.claims.platform == .simulated)
        // The key file form round-trips; another key is refused when one is pinned.
        var file = key.fileBytes()
        let again = try SimulatedKey(fileBytes: file)
        for i in file.indices { file[i] = 0 }
        let e2 = try SimulatedProvider(key: again, measurement: measurement).evidence(reportData: data)
        #expect(try AttestationVerifier.verify(e2.outblob, collateral: .simulated(pinnedKey: key.publicKey), policy: p, at: Date()).verdict == .accepted)
        let other = try SimulatedKey()
        #expect(failedCheck { _ = try AttestationVerifier.verify(e.outblob, collateral: .simulated(pinnedKey: other.publicKey), policy: p, at: Date()) } == .endorsementKey)
        // Simulated evidence is never mistaken for real: TDX or SNP collateral does not apply.
        #expect(failedCheck { _ = try AttestationVerifier.verify(e.outblob, collateral: .tdx(try! Fixtures.tdxCollateral()), policy: p, at: Date()) } == .collateral)
    }
}

@Suite("Policy files")
struct PolicyFileTests {
    @Test("a policy file sets every rule; unknown keys and wrong types are errors")
    func parse() throws {
        let m = String(repeating: "ab", count: 48), rd = String(repeating: "01", count: 64)
        let p = try Policy(json: Array("""
            {"measurements": ["\(m)"], "reportData": "\(rd)", "acceptTCB": ["UpToDate", "SWHardeningNeeded"],
             "minimumSNPTCB": {"bl": 3, "tee": 0, "snp": 8, "ucode": 115}, "allowDebug": true, "allowSimulated": false,
             "requireRevocationCheck": false, "maximumVMPL": 1}
            """.utf8))
        #expect(p.allowedMeasurements == [[UInt8](repeating: 0xab, count: 48)] && p.expectedReportData == [UInt8](repeating: 1, count: 64))
        #expect(p.acceptedTCBStatuses == [.upToDate, .swHardeningNeeded] && p.allowDebug && !p.allowSimulated && !p.requireRevocationCheck)
        #expect(p.minimumSNPTCB == SNPTCB(bootloader: 3, tee: 0, snp: 8, microcode: 115) && p.maximumVMPL == 1)
        let d = try Policy(json: Array("{}".utf8))
        #expect(d.acceptedTCBStatuses == [.upToDate] && !d.allowDebug && d.requireRevocationCheck && d.allowedMeasurements.isEmpty)
        for bad in [#"{"allowDebugs": true}"#, #"{"allowDebug": 1}"#, #"{"maximumVMPL": true}"#, #"{"maximumVMPL": 4}"#,
                    #"{"measurements": ["abcd"]}"#, #"{"acceptTCB": ["Fine"]}"#, #"{"minimumSNPTCB": {"bl": 1}}"#, "[]", "not json"] {
            #expect(throws: AttestationError.self, "\(bad)") { try Policy(json: Array(bad.utf8)) }
        }
    }
}
